"""Issue 12, acceptance 5: `hardway doctor` on a booted host. Healthy: exit 0. Then, in
the same container, four planted problems, each named with its fix and a non-zero exit:
port 443 held by another process, a stale route, an expired certificate, a full disk.

How each is planted (all deterministic, nothing waits on a timer of the hub's):
- port 443: HTTPS (self-signed) on, the proxy stopped, `python3 -m http.server` bound to
  127.0.0.1:443 in its place;
- a stale route: a route for bob (who has no server) written into the proxy's rules file
  the way jupyterhub-traefik-proxy writes routes (its own alias and rule helpers), as a
  hub killed between stopping a server and deleting its route leaves it;
- an expired certificate: given files (https.tls.cert/key) holding a certificate valid for
  40 s, accepted and served, then left to expire: the served certificate and the
  configured files are both past their date, as when an admin forgets to renew;
- a full disk: a 1 MiB tmpfs over /home, filled.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import install_fresh, record
from hubclient import HubUser

ROUTES = "/var/lib/hardway/proxy/rules/jupyterhub-routes.toml"
HUB_PY = "/opt/hardway/hub/bin/python"

PLANT_ROUTE = r'''
import os, grp, toml
from jupyterhub_traefik_proxy import traefik_utils as tu
path = "ROUTES_PATH"
d = toml.load(path)
spec, target = "/user/bob/", "http://127.0.0.1:59999"
router, service = tu.generate_alias(spec, "router"), tu.generate_alias(spec, "service")
http = d.setdefault("http", {})
http.setdefault("routers", {})[router] = {
    "service": service, "rule": tu.generate_rule(spec), "entryPoints": ["http"]}
http.setdefault("services", {})[service] = {
    "loadBalancer": {"servers": [{"url": target}], "passHostHeader": True}}
d.setdefault("jupyterhub", {}).setdefault("routes", {})[router] = {
    "data": {"user": "bob", "server_name": ""}, "routespec": spec, "target": target,
    "router": router, "service": service}
tmp = path + ".plant"
with open(tmp, "w") as f:
    toml.dump(d, f)
os.chown(tmp, 0, grp.getgrnam("hardway-proxy").gr_gid)
os.chmod(tmp, 0o640)
os.replace(tmp, path)
'''.replace("ROUTES_PATH", ROUTES)

SHORT_CERT = r'''
import datetime, os
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import ipaddress
key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.now(datetime.timezone.utc)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(seconds=40))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256()))
os.makedirs("/etc/ssl/short", exist_ok=True)
with open("/etc/ssl/short/hub.crt", "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
fd = os.open("/etc/ssl/short/hub.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
print(cert.not_valid_after_utc.timestamp())
'''


@pytest.fixture(scope="module")
def hub():
    yield from install_fresh("hw-doctor")


def hw(hub, *args: str, check: bool = True):
    return hub.c.run(["hardway", *args], check=check, timeout=600)


def doctor(hub) -> tuple[int, list[dict], str]:
    """Exit status, the JSON findings, and the human output (both runs)."""
    r = hw(hub, "doctor", "--json", check=False)
    assert r.returncode in (0, 1), (r.returncode, r.stdout, r.stderr)
    findings = json.loads(r.stdout)
    human = hw(hub, "doctor", check=False)
    assert human.returncode == r.returncode, (human.stdout, r.stdout)
    return r.returncode, findings, human.stdout


def problems(findings: list[dict]) -> list[dict]:
    return [f for f in findings if f["status"] == "problem"]


def named(findings: list[dict], fid: str, *needles: str) -> dict:
    """The problem ``fid`` whose text holds every needle."""
    for f in problems(findings):
        if f["id"] == fid and all(n in f["what"] for n in needles):
            assert f["fix"], f
            return f
    raise AssertionError(f"no problem {fid} with {needles}: {json.dumps(findings, indent=1)}")


def assert_fix_printed(human: str, finding: dict) -> None:
    lines = human.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("problem") and
             finding["what"] in ln)
    assert lines[i + 1].strip() == f"fix: {finding['fix']}", lines[i:i + 2]


def assert_healthy(rc: int, findings: list[dict], human: str) -> None:
    # the clock of this test host may not be NTP-synchronized: doctor warns, never fails
    assert rc == 0 and not problems(findings), human
    assert {f["id"] for f in findings if f["status"] == "warning"} <= {"clock"}, human
    for fid in ("pending-change", "settings", "unit.jupyterhub.service",
                "unit.jupyterhub-proxy.service", "port.80", "routes", "environment.hub",
                "environment.user", "database", "disk./"):
        assert any(f["id"] == fid and f["status"] == "ok" for f in findings), (fid, human)
    assert "hardway doctor: 0 problem(s)" in human


def wait_port(hub, port: int, up: bool = True, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = hub.c.sh(f"grep -qE ':{port:04X} [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6",
                        check=False).returncode == 0
        if held == up:
            return
        time.sleep(0.2)
    raise AssertionError(f"port {port} {'not listening' if up else 'still held'}")


RESTART_PROXY = ("systemctl stop jupyterhub-proxy && systemctl start "
                 "'jupyterhub-proxy-*.socket' jupyterhub-proxy")


def test_healthy_then_four_planted_problems(hub):
    c = hub.c
    t_all = time.monotonic()
    alice = HubUser(hub.base, "alice", hub.admin_password).sign_in(start_server=True)
    assert alice.token
    t0 = time.monotonic()
    rc, findings, human = doctor(hub)
    took = time.monotonic() - t0
    assert_healthy(rc, findings, human)
    routes = next(f for f in findings if f["id"] == "routes")
    assert "1 route(s)" in routes["what"] and "1 running" in routes["what"], routes

    # HTTPS (self-signed): Traefik itself on 443 is fine
    hw(hub, "config", "set", "https.self_signed", "true", "https.enabled", "true")
    hw(hub, "config", "reload")
    rc, findings, human = doctor(hub)
    assert_healthy(rc, findings, human)
    assert any(f["id"] == "port.443" and "hardway's Traefik" in f["what"] for f in findings)
    assert any(f["id"] == "certificate.served" and f["status"] == "ok" for f in findings)

    # (a) port 443 held by another process (systemd holds the proxy's ports while its
    # sockets run: stopped too, or the squatter could not bind)
    proxy = ["jupyterhub-proxy-443.socket", "jupyterhub-proxy-80.socket", "jupyterhub-proxy"]
    c.run(["systemctl", "stop", *proxy])
    pid = c.sh("nohup python3 -m http.server --bind 127.0.0.1 --directory /tmp 443 "
               ">/tmp/squatter.log 2>&1 & echo $!").stdout.strip()
    try:
        wait_port(hub, 443)
        rc, findings, human = doctor(hub)
        assert rc == 1
        f = named(findings, "port.443", f"pid {pid}",
                  "http.server --bind 127.0.0.1 --directory /tmp 443")
        assert f"kill {pid}" in f["fix"] and f"then `{RESTART_PROXY}`" in f["fix"]
        assert_fix_printed(human, f)
    finally:
        c.run(["bash", "-c", f"kill {pid}"], check=False)  # no procps here
        wait_port(hub, 443, up=False)
        # what doctor's fix says (asserted above): the sockets, then the proxy on them
        c.run(["sh", "-c", RESTART_PROXY])
    wait_port(hub, 443)

    # (b) a stale route: one for bob, who has no server
    c.run([HUB_PY, "-c", PLANT_ROUTE])
    rc, findings, human = doctor(hub)
    assert rc == 1
    f = named(findings, "routes", "stale route", "/user/bob/", "bob's server")
    assert "systemctl restart jupyterhub" in f["fix"]
    assert_fix_printed(human, f)
    # the fix it gives works: the restarted hub re-syncs the routes
    c.run(["systemctl", "restart", "jupyterhub"])
    deadline = time.monotonic() + 90
    while True:
        rc, findings, human = doctor(hub)
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert_healthy(rc, findings, human)

    # (c) an expired certificate: given files valid for 40 s, accepted, served, expired
    not_after = float(c.run([HUB_PY, "-c", SHORT_CERT]).stdout.strip())
    hw(hub, "config", "set", "https.self_signed", "false", "https.tls.cert",
       "/etc/ssl/short/hub.crt", "https.tls.key", "/etc/ssl/short/hub.key")
    hw(hub, "config", "reload")
    time.sleep(max(0.0, not_after - time.time() + 1))
    rc, findings, human = doctor(hub)
    assert rc == 1
    # the settings name the given file as expired (they no longer load, so the
    # certificate checks that read them are skipped): named once, with its fix
    expired = named(findings, "settings", "/etc/ssl/short/hub.crt", "expired on")
    assert expired["fix"], expired
    assert_fix_printed(human, expired)
    hw(hub, "config", "set", "https.self_signed", "true", "https.tls.cert", "",
       "https.tls.key", "")
    hw(hub, "config", "reload")

    # (d) a full disk: a 1 MiB tmpfs over /home, filled up
    c.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/home"])
    try:
        c.sh("dd if=/dev/zero of=/home/filler bs=4k 2>/dev/null; true")
        rc, findings, human = doctor(hub)
        assert rc == 1
        f = named(findings, "disk./home", "/home", "under the threshold")
        assert "du -xsh /home" in f["fix"]
        assert_fix_printed(human, f)
    finally:
        c.run(["umount", "/home"])
    rc, findings, human = doctor(hub)
    assert_healthy(rc, findings, human)
    record("doctor-run", {"figure": round(took, 2), "unit": "s",
                          "how": "one `hardway doctor --json` on a healthy hub with one "
                                 "running server (a single run; benchmarks/doctor.py "
                                 "takes the median of 5)",
                          "module_seconds": round(time.monotonic() - t_all, 1)})
