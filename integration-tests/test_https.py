"""Issue 6 on a booted host: HTTPS from a real ACME CA (Pebble), from given files and
self-signed; the Traefik API's protection; the Traefik download from a mirror; hardway
behind a real nginx; and user traffic that keeps flowing while certificates and routes
change. Everything listens on the host's loopback, which the container shares."""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import io
import re
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests
import urllib3
from conftest import record
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hubclient import HubUser, RequestLoop
from peer_acme import Pebble, eab_key, served_certificate
from peers import Nginx
from test_config import hw, pids

HTTPS = "https://127.0.0.1"
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # self-signed, on purpose
TRAEFIK_VERSION = "3.7.15"


def reload(hub) -> str:
    return hw(hub, "config", "reload", "--timeout", "120").stdout


def peer_cert(port: int = 443, server_name: str | None = None) -> x509.Certificate:
    """The certificate the proxy serves (unverified: we look at what it is)."""
    return served_certificate(port, server_name)


def names_of(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def make_pair(names: list[str], days: int = 30, start_days: int = -1,
              key: ec.EllipticCurvePrivateKey | None = None) -> tuple[bytes, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def put(hub, inside: str, content: bytes, mode: int = 0o600) -> str:
    """A file inside the container, written from the host (root-owned)."""
    path = hub.c.path(inside)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)
    return inside


def refused(hub, *args: str) -> str:
    r = hw(hub, "config", *args, check=False)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_traefik_api_needs_credentials_and_listens_on_loopback_only(hub):
    r = requests.get("http://127.0.0.1:8099/api/http/routers", timeout=10)
    assert r.status_code == 401
    r = requests.get("http://127.0.0.1:8099/api/http/routers", timeout=10,
                     auth=("hardway", "wrong-password"))
    assert r.status_code == 401
    # the container shares the host's network: the host's ss sees its sockets
    listeners = subprocess.run(["ss", "-Hltn", "sport = :8099"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert [a for a in listeners if a.endswith(":8099")] == ["127.0.0.1:8099"], listeners
    # and from another address of this machine, nothing answers on that port
    other = [a for a in hub.c.run(["hostname", "-I"]).stdout.split()
             if not a.startswith("127.") and ":" not in a]
    for address in other:
        with pytest.raises(OSError):
            socket.create_connection((address, 8099), timeout=3).close()
    # the password is in no file anyone but root (or the proxy's group) can read
    password = hub.c.run(["cat", "/var/lib/hardway/secrets/proxy_api_password"]).stdout.strip()
    assert len(password) >= 32
    found = hub.c.run(["sh", "-c", "grep -rlsF -- \"$0\" /etc /var/lib/hardway /opt/hardway "
                                   "/run /tmp /var/log 2>/dev/null || true", password]).stdout
    for path in found.split():
        mode = int(hub.c.run(["stat", "-c", "%a", path]).stdout.strip(), 8)
        assert mode & 0o004 == 0, f"{path} holds the API password and is world-readable"
    journal = hub.c.run(["journalctl", "--no-pager", "-o", "cat"]).stdout
    assert password not in journal


def test_forwarded_headers_from_untrusted_clients_are_discarded(hub):
    """With no http.trusted_proxies, a client claiming X-Forwarded-Proto: https is not
    believed: the hub sees plain HTTP and its login cookie is not marked Secure (behind
    nginx, with the proxy trusted, it is: test_behind_nginx_terminating_tls)."""
    HubUser("http://127.0.0.1", "alice", hub.admin_password).sign_in().allow("dora")
    u = HubUser("http://127.0.0.1", "dora", "dora-password-long")
    u.s.headers["X-Forwarded-Proto"] = "https"
    u.login()
    cookies = {c.name: c for c in u.s.cookies}
    assert cookies["jupyterhub-hub-login"].secure is False, cookies


def test_systemd_analyze_security_of_the_proxy(hub):
    out = hub.c.run(["systemd-analyze", "security", "--no-pager",
                     "jupyterhub-proxy.service"]).stdout
    m = re.search(r"Overall exposure level for jupyterhub-proxy\.service: ([0-9.]+)", out)
    assert m, out[-500:]
    score = float(m.group(1))
    record("proxy-exposure", {"figure": score, "unit": "systemd-analyze exposure (0 best, 10 "
                              "worst)", "how": "systemd-analyze security "
                              "jupyterhub-proxy.service on the booted host"})
    assert score <= 2.0, out
    # no capability to bind ports anywhere in the unit: systemd holds them
    assert "CAP_NET_BIND_SERVICE" not in hub.c.run(
        ["systemctl", "show", "--property=CapabilityBoundingSet", "--value",
         "jupyterhub-proxy.service"]).stdout


class Mirror:
    """A local HTTP server laid out like Traefik's release host."""

    def __init__(self, root: Path):
        self.root = root
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/traefik/releases"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, binary: bytes) -> None:
        name = f"traefik_v{TRAEFIK_VERSION}_linux_amd64.tar.gz"
        path = self.root / "traefik" / "releases" / f"v{TRAEFIK_VERSION}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for member, data in (("LICENSE.md", b"MIT\n"), ("CHANGELOG.md", b"-\n"),
                                 ("traefik", binary)):
                info = tarfile.TarInfo(member)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        path.write_bytes(buf.getvalue())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_traefik_from_a_mirror_checked_against_the_pin(hub, tmp_path):
    binary_path = hub.c.path("/opt/hardway/bin/traefik")
    real = binary_path.read_bytes()
    mirror = Mirror(tmp_path)
    try:
        hw(hub, "config", "set", "proxy.traefik.download_url", mirror.url)
        # a tampered build on the mirror: refused, nothing installed, no fallback
        mirror.publish(real + b"\0")
        binary_path.unlink()
        r = hw(hub, "config", "reload", check=False)
        assert r.returncode != 0
        assert "refusing to install it" in r.stderr and mirror.url in r.stderr, r.stderr
        assert not binary_path.exists()
        # the running proxy (which holds the old file open) still serves
        assert requests.get("http://127.0.0.1/hub/api/", timeout=10).status_code == 200
        # the real release tarball: installed from the mirror, and said so
        mirror.publish(real)
        out = reload(hub)
        assert f"installed Traefik {TRAEFIK_VERSION} from mirror {mirror.url}" in out, out
        assert hashlib.sha256(binary_path.read_bytes()).digest() == \
            hashlib.sha256(real).digest()
        assert f"from mirror {mirror.url}" in hw(hub, "status").stdout
        hw(hub, "config", "unset", "proxy.traefik.download_url")
    finally:
        mirror.close()


@pytest.fixture(scope="module")
def alice(hub):
    return HubUser("http://127.0.0.1", "alice", hub.admin_password).sign_in(start_server=True)


def over_https(user: HubUser, base: str = HTTPS) -> HubUser:
    """The same user, not checking the certificate; ``base`` http://127.0.0.1 follows
    the redirect to HTTPS once it is on."""
    u = HubUser(base, user.name, user.password, verify=False)
    u.token = user.token
    return u


def test_self_signed_then_given_files_without_dropping_a_request(hub, alice):
    before = pids(hub)
    hw(hub, "config", "set", "https.enabled", "true", "https.self_signed", "true",
       "https.self_signed_names", "hub.lab.test,127.0.0.1", "https.hsts", "true")
    # a visitor of the plain-HTTP address, each request on a new connection: answered
    # before, redirected to HTTPS and answered after, never refused or cut between
    with RequestLoop(over_https(alice, "http://127.0.0.1"), "/user/alice/api/status",
                     new_connections=True) as loop:
        time.sleep(0.5)
        out = reload(hub)
        time.sleep(1)
    record("https-on-requests", {
        "figure": {"failed": len(loop.failed), "requests": len(loop.statuses),
                   "slowest_s": round(loop.slowest, 2), "errors": loop.errors},
        "unit": "requests", "how": "GET alice's server at http://127.0.0.1 (redirects "
        "followed) every 50 ms, new connections, across config reload turning HTTPS on"})
    assert loop.failed == [] and len(loop.statuses) > 10, loop.errors
    assert "generated a self-signed certificate for hub.lab.test, 127.0.0.1" in out
    # a static change: the proxy only, and its ports (443 is new; 80 now redirects)
    assert re.search(r"^restarted: jupyterhub-proxy-443\.socket, jupyterhub-proxy\.service$",
                     out, re.M), out
    assert pids(hub)["jupyterhub.service"] == before["jupyterhub.service"]
    assert names_of(peer_cert(443, "hub.lab.test")) == {"hub.lab.test", "127.0.0.1"}
    assert names_of(peer_cert(443)) == {"hub.lab.test", "127.0.0.1"}  # no SNI: same cert
    # plain HTTP only redirects, keeping the path
    r = requests.get("http://127.0.0.1/hub/login?next=%2Fhub%2F", allow_redirects=False,
                     timeout=10)
    assert r.status_code in (301, 308) and r.headers["Location"] == \
        "https://127.0.0.1/hub/login?next=%2Fhub%2F"
    r = requests.get(f"{HTTPS}/hub/login", verify=False, timeout=10)
    assert r.status_code == 200 and r.headers["Strict-Transport-Security"] == "max-age=31536000"
    # TLS 1.1 is refused by the server (a protocol-version alert), TLS 1.2 accepted
    assert tls_handshake(ssl.TLSVersion.TLSv1_2) == "ok"
    assert "PROTOCOL_VERSION" in tls_handshake(ssl.TLSVersion.TLSv1_1).upper()
    a = over_https(alice)
    assert a.execute("1 + 1") == "2"  # the kernel's websocket over wss://

    hub_key = ec.generate_private_key(ec.SECP256R1())
    cert, key = make_pair(["hub.example.edu"], key=hub_key)
    lapsed, _ = make_pair(["hub.example.edu"], days=-1, start_days=-90, key=hub_key)
    put(hub, "/etc/ssl/hub/hub.crt", cert, 0o644)
    put(hub, "/etc/ssl/hub/hub.key", key)
    _, other_key = make_pair(["hub.example.edu"])
    put(hub, "/etc/ssl/hub/other.key", other_key)
    old_cert, old_key = make_pair(["hub.example.edu"], days=-1, start_days=-90)
    put(hub, "/etc/ssl/hub/old.crt", old_cert, 0o644)
    put(hub, "/etc/ssl/hub/old.key", old_key)
    to_files = ("https.self_signed", "false", "https.tls.cert", "/etc/ssl/hub/hub.crt")
    config = hub.c.path("/etc/hardway/config.yaml").read_bytes()
    proxy_pid = pids(hub)["jupyterhub-proxy.service"]
    assert "is not the private key of the certificate" in refused(
        hub, "set", *to_files, "https.tls.key", "/etc/ssl/hub/other.key")
    assert "expired on" in refused(hub, "set", "https.self_signed", "false", "https.tls.cert",
                                   "/etc/ssl/hub/old.crt", "https.tls.key",
                                   "/etc/ssl/hub/old.key")
    assert "/etc/ssl/hub/missing.key does not exist" in refused(
        hub, "set", *to_files, "https.tls.key", "/etc/ssl/hub/missing.key")
    assert hub.c.path("/etc/hardway/config.yaml").read_bytes() == config
    assert pids(hub)["jupyterhub-proxy.service"] == proxy_pid

    # while alice's server is hit every 50 ms over HTTPS: switch to the given files and
    # back, and add and remove another user's route
    a.allow("bob")
    bob = HubUser(HTTPS, "bob", "bob-password-long", verify=False).sign_in()
    with RequestLoop(a, "/user/alice/api/status") as loop:
        hw(hub, "config", "set", *to_files, "https.tls.key", "/etc/ssl/hub/hub.key")
        out = reload(hub)
        assert "restarted: nothing" in out, out
        deadline = time.monotonic() + 10
        while names_of(peer_cert(443, "hub.example.edu")) != {"hub.example.edu"}:
            assert time.monotonic() < deadline, "the given certificate is not served"
            time.sleep(0.1)
        route_seconds = bob.start_server()
        # a renewal gone wrong: the configured file now holds an expired certificate.
        # reload refuses it by name and the proxy keeps serving the good one
        hub.c.path("/etc/ssl/hub/hub.crt").write_bytes(lapsed)
        r = hw(hub, "config", "reload", check=False)
        assert r.returncode == 2 and "https.tls.cert" in r.stderr and "expired" in r.stderr, \
            r.stderr
        assert names_of(peer_cert(443, "hub.example.edu")) == {"hub.example.edu"}
        hub.c.path("/etc/ssl/hub/hub.crt").write_bytes(cert)
        hw(hub, "config", "set", "https.self_signed", "true", "https.tls.cert", "",
           "https.tls.key", "")
        assert "restarted: nothing" in reload(hub)
        bob.api("DELETE", "/hub/api/users/bob/server")
        deadline = time.monotonic() + 30
        while requests.get(f"{HTTPS}/user/bob/api/status", verify=False, timeout=10,
                           allow_redirects=False).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    record("https-zero-drop", {"figure": len(loop.failed), "unit": "failed requests",
                               "of": len(loop.statuses), "how": "GET alice's server every "
                               "50 ms over HTTPS while switching self-signed -> given files -> "
                               "self-signed and starting/stopping bob's server"})
    assert loop.failed == [] and len(loop.statuses) > 20, loop.statuses
    assert pids(hub) == {**before, "jupyterhub-proxy.service": proxy_pid}
    assert names_of(peer_cert(443, "hub.lab.test")) == {"hub.lab.test", "127.0.0.1"}
    record("route-start-https", {"figure": round(route_seconds, 2), "unit": "s",
                                 "how": "bob's spawn request until his server answered "
                                        "through the proxy over HTTPS"})


def test_a_crashed_or_restarted_proxy_drops_no_connection(hub, alice):
    """systemd holds the proxy's ports and the gate holds back new connections while no
    loaded Traefik serves them: across kill -9 of Traefik (systemd starts it again) and
    `systemctl restart`, no connection is refused, none is cut and none gets a 404 or
    the placeholder certificate; a new visitor waits instead. Traefik itself holds no
    capability. Each request on a new connection, as a new visitor's."""
    c = hub.c
    a = over_https(alice)
    unit = "jupyterhub-proxy.service"
    for port in (80, 443):
        assert c.run(["systemctl", "is-active", f"jupyterhub-proxy-{port}.socket"]
                     ).stdout.strip() == "active"
    pid = pids(hub)[unit]
    status = c.run(["cat", f"/proc/{pid}/status"]).stdout
    # Traefik itself holds no capability (the gate clears its own before becoming it)
    for held in ("CapEff", "CapPrm", "CapAmb"):
        assert re.search(rf"^{held}:\s+0+$", status, re.M), status
    with RequestLoop(a, "/user/alice/api/status", new_connections=True) as loop:
        time.sleep(1)
        at_kill = len(loop.statuses)
        killed_at = time.monotonic()
        c.run(["systemctl", "kill", "--signal=KILL", "--kill-whom=main", unit])
        deadline = time.monotonic() + 30
        while (now := pids(hub)[unit]) in (pid, "0"):
            assert time.monotonic() < deadline, "systemd did not start the proxy again"
            time.sleep(0.2)
        time.sleep(3)
        killed = len(loop.statuses)
        t0 = time.monotonic()
        c.run(["systemctl", "restart", unit])
        restart_seconds = time.monotonic() - t0
        at_restart = len(loop.statuses)
        time.sleep(3)
    # the one request Traefik was serving at the instant of kill -9 dies with it: no
    # server can answer a request its process lost. Every other one is answered
    cut = loop.in_flight(killed_at)
    record("proxy-crash-and-restart", {
        "figure": {"failed": len(loop.failed), "in flight at kill -9": cut,
                   "requests": len(loop.statuses), "slowest_s": round(loop.slowest, 2),
                   "restart_s": round(restart_seconds, 2), "errors": loop.errors,
                   "kill_at": at_kill, "restart_at": at_restart},
        "unit": "requests", "how": "GET alice's server every 50 ms over HTTPS, each on a "
        "new connection, across kill -9 of Traefik (systemd starts it again) and "
        "systemctl restart jupyterhub-proxy"})
    assert now != pid and killed > 20 and len(loop.statuses) > killed + 20, loop.statuses
    assert [i for i, _ in loop.errors if i not in cut] == [], (loop.errors, cut, at_restart)
    assert all(s in (200, -1) for s in loop.statuses), loop.statuses
    # the gate let connections in once Traefik had loaded: "ready" means serving
    assert "routes loaded; serving" in c.run(
        ["systemctl", "show", "--property=StatusText", "--value", unit]).stdout


def tls_handshake(version: ssl.TLSVersion) -> str:
    """"ok", or why a handshake at exactly this TLS version failed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer the old versions
    ctx.minimum_version = ctx.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", 443), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="hub.lab.test"):
            return "ok"
    except ssl.SSLError as e:
        return str(e)


@pytest.fixture(scope="module")
def pebble():
    # Pebble validates for real: http-01 on port 80, tls-alpn-01 on port 443, which are
    # the container's Traefik entry points (the container shares the host's network)
    with Pebble(http_port=80, tls_port=443) as p:
        yield p


@pytest.mark.parametrize("challenge, domain, eab", [
    ("http-01", "hub.hardway.test", False),
    ("tls-alpn-01", "lab.hardway.test", False),
    # an institutional CA that requires external account binding: another Pebble
    ("http-01", "eab.hardway.test", True),
])
def test_acme_certificate_from_pebble(hub, alice, pebble, challenge, domain, eab):
    if not eab:
        run_acme(hub, alice, pebble, challenge, domain)
        return
    kid, hmac = "hardway-test-kid", eab_key()
    with Pebble(http_port=80, tls_port=443, eab={kid: hmac}, port=14001, mgmt_port=15001,
                dns_port=8054) as strict:
        # without the binding this CA refuses the account: nothing is issued
        run_acme(hub, alice, strict, challenge, f"no-{domain}", expect_issued=False)
        hw(hub, "config", "set", "https.letsencrypt.eab_kid", kid,
           "https.letsencrypt.eab_hmac", hmac)
        run_acme(hub, alice, strict, challenge, domain, label="-eab")
        hw(hub, "config", "unset", "https.letsencrypt.eab_kid", "https.letsencrypt.eab_hmac")


def run_acme(hub, alice, pebble, challenge, domain, expect_issued=True, label=""):
    put(hub, "/etc/hardway/pebble-ca.pem", Path(pebble.ca_cert_path).read_bytes(), 0o644)
    hub_pid = pids(hub)["jupyterhub.service"]
    t0 = time.monotonic()
    # tls-alpn-01 with one name: lego validates names one after another and backs off
    # 5 s (+-50 %) each time its first poll finds Pebble still validating (22 s with two)
    names = [domain] if challenge == "tls-alpn-01" else [domain, f"www.{domain}"]
    hw(hub, "config", "set", "https.enabled", "true", "https.self_signed", "false",
       "https.letsencrypt.domains", ",".join(names),
       "https.letsencrypt.email", "admin@hardway.test",
       "https.letsencrypt.ca_server", pebble.directory_url,
       "https.letsencrypt.ca_certificates", "/etc/hardway/pebble-ca.pem",
       "https.letsencrypt.challenge", challenge)
    log_before = len(pebble.log())
    # a new visitor every 50 ms over HTTPS while Traefik restarts with the new challenge
    # and names: none is refused, cut or answered by a Traefik that has not loaded
    with RequestLoop(over_https(alice), "/user/alice/api/status",
                     new_connections=True) as loop:
        out = reload(hub)
    record(f"acme-{challenge}{label}-requests", {
        "figure": {"failed": len(loop.failed), "requests": len(loop.statuses),
                   "slowest_s": round(loop.slowest, 2), "errors": loop.errors},
        "unit": "requests", "how": "GET alice's server over HTTPS every 50 ms, new "
        "connections, across the reload that restarts Traefik for the ACME settings"})
    assert loop.failed == [], loop.errors
    # the Traefik being replaced never saw the new names: the CA validated each name
    # once, for the new process, and none failed
    validations = pebble.log()[log_before:]
    record(f"acme-{challenge}{label}-ca-log", {"figure": validations[-3000:], "unit": "log",
                                               "how": "Pebble's log during the reload"})
    if expect_issued:
        assert "invalid" not in validations.lower(), validations
    if not expect_issued:
        # the reload says why, from Traefik's log, instead of leaving a placeholder behind
        for name in (domain, f"www.{domain}"):
            # each name, with Traefik's reason, and none called served
            assert re.search(rf"^warning: https: the ACME CA gave no certificate for "
                             rf"{re.escape(name)}: not issued: Traefik says: .*"
                             rf"externalAccountRequired", out, re.M), out
        assert "https: certificate from the ACME CA" not in out, out
        with pytest.raises(TimeoutError):
            pebble.wait_issued(443, domain, timeout=3)
        return
    for name in names:
        assert f"https: certificate from the ACME CA: {name}: issued by Pebble " \
            "Intermediate" in out, out
    try:
        leaf = pebble.wait_issued(443, domain, timeout=30)  # chain checked against Pebble's root
    except TimeoutError:
        pytest.fail(hub.c.run(["journalctl", "--no-pager", "-o", "cat", "-n", "40",
                               "-u", "jupyterhub-proxy"]).stdout)
    took = time.monotonic() - t0
    record(f"acme-{challenge}{label}", {"figure": round(took, 2), "unit": "s",
                  "how": "config set + reload until Traefik served a certificate from a "
                         "local Pebble for the domain, chain verified against its root"})
    # every name is served a certificate valid for it, chained to Pebble's root (with
    # several names Traefik also holds one for the first name alone: the one clients
    # sending no name get)
    assert domain in names_of(leaf)
    for name in names[1:]:
        assert names_of(pebble.wait_issued(443, name, timeout=10)) == set(names)
    status = hw(hub, "status").stdout
    assert "https: acme\n" in status, status
    for name in names:
        assert f"  {name}: issued by Pebble Intermediate" in status, status
    assert re.search(rf"^  \(no server name\): serving {re.escape(domain)}\b.* issued by "
                     "Pebble Intermediate", status, re.M), status
    # a client that sends no name (or the IP) gets an ACME certificate too, valid for the
    # first name
    assert domain in names_of(peer_cert(443))
    stores = hub.c.run(["sh", "-c", "stat -c '%a %U' /var/lib/hardway/proxy/acme/*.json"])
    assert set(stores.stdout.splitlines()) == {"600 hardway-proxy"}, stores.stdout
    r = requests.get("http://127.0.0.1/hub/api/", headers={"Host": domain},
                     allow_redirects=False, timeout=10)
    assert r.status_code in (301, 308) and r.headers["Location"] == f"https://{domain}/hub/api/"
    assert over_https(alice).execute("6 * 7") == "42"  # kernel websocket over HTTPS
    assert pids(hub)["jupyterhub.service"] == hub_pid  # HTTPS never restarted the hub


def test_a_name_the_ca_cannot_validate_is_reported_by_name(hub, alice, pebble):
    """A name the CA cannot validate (its DNS answers SERVFAIL to Pebble) is added to one
    that has a certificate: reload and status name it with Traefik's reason and never
    call it served; the other name keeps its certificate, and so do clients that send no
    name; no request is dropped meanwhile."""
    good, bad = "lab.hardway.test", "bad.lab.hardway.test"
    pebble.servfail(bad)
    put(hub, "/etc/hardway/pebble-ca.pem", Path(pebble.ca_cert_path).read_bytes(), 0o644)
    # the certificate for the first name, issued by this Pebble in an earlier test
    hw(hub, "config", "set", "https.letsencrypt.domains", good,
       "https.letsencrypt.ca_server", pebble.directory_url,
       "https.letsencrypt.challenge", "tls-alpn-01")
    assert f"https: certificate from the ACME CA: {good}: issued by Pebble" in reload(hub)
    hw(hub, "config", "set", "https.letsencrypt.domains", f"{good},{bad}")
    with RequestLoop(over_https(alice), "/user/alice/api/status",
                     new_connections=True) as loop:
        out = reload(hub)
    assert f"https: certificate from the ACME CA: {good}: issued by Pebble" in out, out
    said = re.search(rf"^warning: https: the ACME CA gave no certificate for "
                     rf"{re.escape(bad)}: not issued: Traefik says: (.*)$", out, re.M)
    # Traefik's reason, this name's own part of the failed order (Pebble could not
    # resolve it), not the whole log line
    assert said and "Could not resolve" in said[1] and " ERR " not in said[1], out
    assert f"certificate from the ACME CA: {bad}" not in out, out
    status = hw(hub, "status").stdout
    assert f"  {good}: issued by Pebble Intermediate" in status, status
    assert f"  {bad}: not issued: Traefik says: " in status, status
    assert names_of(peer_cert(443, good)) == {good}
    assert names_of(peer_cert(443, bad)) == {good}  # what there is: not called served
    assert good in names_of(peer_cert(443))  # no server name: the first name's
    assert loop.failed == [], loop.errors
    hw(hub, "config", "set", "https.letsencrypt.domains", good)


def test_behind_nginx_terminating_tls(hub):
    hw(hub, "config", "set", "https.enabled", "false", "http.address", "127.0.0.1",
       "http.port", "8000", "http.trusted_proxies", "127.0.0.1/32",
       "public_url", "https://127.0.0.1:8443/")
    reload(hub)
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    assert "127.0.0.1:8000 " in listening and ":80 " not in listening and \
        ":443 " not in listening, listening
    proxy = Nginx(8443, 8000)
    try:
        HubUser("https://127.0.0.1:8443", "alice", hub.admin_password,
                verify=False).sign_in().allow("carol")
        carol = HubUser("https://127.0.0.1:8443", "carol", "carol-password-long", verify=False)
        carol.sign_in(start_server=True)
        assert carol.execute("2 ** 10") == "1024"  # the kernel's websocket through nginx
        # the hub knew the browser used HTTPS (nginx's X-Forwarded-Proto, trusted by
        # Traefik from 127.0.0.1): its login cookie is Secure
        cookies = {c.name: c for c in carol.s.cookies}
        assert cookies["jupyterhub-hub-login"].secure, cookies
    except Exception:
        print(proxy.log()[-3000:])
        raise
    finally:
        proxy.stop()
