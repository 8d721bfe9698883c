"""HTTPS settings: one certificate source, given files checked before use, and what each
mode renders for Traefik (the booted-host tests prove Traefik serves it)."""

from __future__ import annotations

import datetime

import pytest
import tomlkit
from conftest import write_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_render import render

from hardway import tls
from hardway.apply.files import ensure_self_signed
from hardway.errors import ConfigError
from hardway.plugin.manager import load_settings


def make_cert(tmp_path, name="hub.example.edu", days=30, key=None, start_days=-1):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    c = tmp_path / f"{name}-{days}.crt"
    k = tmp_path / f"{name}-{days}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def files_config(cert, key):
    return f"https:\n  enabled: true\n  tls:\n    cert: {cert}\n    key: {key}\n"


def test_https_off_renders_plain_http_only(paths, registry):
    static = tomlkit.loads(render(paths, registry)[paths.traefik_toml].content.decode()).unwrap()
    assert set(static["entryPoints"]) == {"http", "auth_api"}
    assert "certificatesResolvers" not in static


def test_given_files_are_served_inline_with_tls12_minimum(paths, registry, tmp_path):
    cert, key = make_cert(tmp_path)
    write_config(paths, files_config(cert, key) + "  hsts: true\n")
    files = render(paths, registry)
    static = tomlkit.loads(files[paths.traefik_toml].content.decode()).unwrap()
    assert static["entryPoints"]["http"]["address"] == ":443"
    assert static["entryPoints"]["http"]["http"]["tls"] == {}
    redirect = static["entryPoints"]["http-redirect"]
    assert redirect["address"] == ":80"
    assert redirect["http"]["redirections"]["entryPoint"] == {
        "to": "http", "scheme": "https", "permanent": True}
    dyn_file = files[paths.rules_dir / "00-hardway.toml"]
    dynamic = tomlkit.loads(dyn_file.content.decode()).unwrap()
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    served = dynamic["tls"]["stores"]["default"]["defaultCertificate"]
    assert served["certFile"] == cert.read_text() and served["keyFile"] == key.read_text()
    assert dynamic["http"]["middlewares"]["hardway-headers"]["headers"]["stsSeconds"] == 31536000
    # the key is inline: the file must stay out of reach of everyone but the proxy
    assert (dyn_file.mode, dyn_file.group, dyn_file.component) == (
        0o640, "hardway-proxy", "proxy-dynamic")
    # systemd holds both ports, each socket named after its port; a drop-in names it
    # after the entry point served on it, so a new name leaves the socket open
    for name, port in (("http", 443), ("http-redirect", 80)):
        unit = paths.unit(f"jupyterhub-proxy-{port}.socket")
        socket = files[unit].content.decode()
        assert f"ListenStream={port}\n" in socket and "FileDescriptorName" not in socket
        named = files[unit.parent / f"{unit.name}.d" / "entry-point.conf"]
        assert f"FileDescriptorName={name}\n" in named.content.decode()
        assert named.component == "proxy"  # daemon-reload and a proxy restart, no reopening
    proxy = files[paths.unit("jupyterhub-proxy.service")].content.decode()
    assert "Sockets=jupyterhub-proxy-443.socket jupyterhub-proxy-80.socket\n" in proxy


def test_a_given_address_is_bound_even_before_it_is_up(paths, registry):
    write_config(paths, "http:\n  address: 192.0.2.10\n  port: 8000\n")
    files = render(paths, registry)
    socket = files[paths.unit("jupyterhub-proxy-8000.socket")].content.decode()
    assert "ListenStream=192.0.2.10:8000\n" in socket and "FreeBind=yes\n" in socket
    write_config(paths, "http:\n  address: '2001:db8::10'\n")
    socket = render(paths, registry)[paths.unit("jupyterhub-proxy-80.socket")]
    assert "ListenStream=[2001:db8::10]:80\n" in socket.content.decode()


def test_a_new_certificate_changes_only_the_watched_dynamic_file(paths, registry, tmp_path):
    cert, key = make_cert(tmp_path)
    write_config(paths, files_config(cert, key))
    before = render(paths, registry)
    cert2, key2 = make_cert(tmp_path, days=60)
    write_config(paths, files_config(cert2, key2))
    after = render(paths, registry)
    changed = {p for p in after if after[p].content != before[p].content}
    assert changed == {paths.rules_dir / "00-hardway.toml"}


@pytest.mark.parametrize("problem", ["mismatch", "expired", "missing", "not-pem", "future"])
def test_bad_given_files_are_refused_naming_the_key(paths, registry, tmp_path, problem):
    cert, key = make_cert(tmp_path)
    if problem == "mismatch":
        _, key = make_cert(tmp_path, name="other.example.edu")
        expect = "https.tls.key: " + str(key) + " is not the private key of the certificate"
    elif problem == "expired":
        cert, key = make_cert(tmp_path, days=-1, start_days=-10)
        expect = "https.tls.cert: the certificate in " + str(cert) + " expired on"
    elif problem == "missing":
        key = tmp_path / "nope.key"
        expect = f"https.tls.key: {key} does not exist"
    elif problem == "not-pem":
        cert.write_text("hello\n")
        expect = f"https.tls.cert: {cert} holds no PEM certificate"
    else:
        cert, key = make_cert(tmp_path, days=30, start_days=2)
        expect = "is not valid before"
    write_config(paths, files_config(cert, key))
    with pytest.raises(ConfigError) as e:
        load_settings(paths, registry)
    assert expect in str(e.value)


@pytest.mark.parametrize("config, expect", [
    ("https:\n  enabled: true\n", "no certificate source is set"),
    ("https:\n  enabled: true\n  self_signed: true\n  letsencrypt:\n    domains: [a.example]\n",
     "more than one certificate source"),
    ("https:\n  enabled: true\n  tls:\n    cert: /etc/x.crt\n", "https.tls.key is required"),
    ("https:\n  enabled: true\n  letsencrypt:\n    domains: [a.example]\n    eab_kid: k\n",
     "eab_kid and https.letsencrypt.eab_hmac go together"),
    ("https:\n  enabled: true\n  letsencrypt:\n    domains: ['bad name']\n",
     "https.letsencrypt.domains"),
    ("https:\n  enabled: true\n  self_signed: true\n  port: 80\n",
     "https.port and http.port are both 80"),
])
def test_https_settings_that_cannot_work_are_refused(paths, registry, config, expect):
    write_config(paths, config)
    with pytest.raises(ConfigError) as e:
        load_settings(paths, registry)
    assert expect in str(e.value)


def test_acme_resolver_in_static_config(paths, registry, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_cert(tmp_path, name="ca.test")[0].read_bytes())
    write_config(paths, f"""https:
  enabled: true
  letsencrypt:
    email: admin@example.edu
    domains: [hub.example.edu, jupyter.example.edu]
    ca_server: https://acme.example.edu/dir
    ca_certificates: [{ca}]
    challenge: tls-alpn-01
    eab_kid: kid-1
    eab_hmac: c2VjcmV0
""")
    files = render(paths, registry)
    static = tomlkit.loads(files[paths.traefik_toml].content.decode()).unwrap()
    acme = static["certificatesResolvers"]["hardway"]["acme"]
    assert acme["caServer"] == "https://acme.example.edu/dir"
    store = acme["storage"]
    assert store.startswith(str(paths.acme_dir / "acme-acme.example.edu-")), store
    assert acme["tlsChallenge"] == {} and "httpChallenge" not in acme
    assert acme["eab"] == {"kid": "kid-1", "hmacEncoded": "c2VjcmV0"}
    copy = paths.proxy_dir / "acme-ca" / "0.pem"
    assert acme["caCertificates"] == [str(copy)]
    assert files[copy].content == ca.read_bytes() and files[copy].group == "hardway-proxy"
    assert static["entryPoints"]["http"]["http"]["tls"] == {
        "certResolver": "hardway",
        "domains": [{"main": "hub.example.edu", "sans": ["jupyter.example.edu"]}]}
    dynamic = tomlkit.loads(files[paths.rules_dir / "00-hardway.toml"].content.decode()).unwrap()
    # no server name: a certificate valid for the first name (not one for the whole set,
    # which a name the CA refuses would leave unissued)
    assert dynamic["tls"]["stores"]["default"]["defaultGeneratedCert"] == {
        "resolver": "hardway", "domain": {"main": "hub.example.edu"}}
    # the hub needs no restart for any of this
    assert files[paths.hub_json].content == render_without_https(paths, registry)


def render_without_https(paths, registry):
    paths.config_file.rename(paths.config_file.with_suffix(".off"))
    try:
        return render(paths, registry)[paths.hub_json].content
    finally:
        paths.config_file.with_suffix(".off").rename(paths.config_file)


def test_letsencrypt_staging_and_production(paths, registry):
    write_config(paths, "https:\n  enabled: true\n  letsencrypt:\n    domains: [a.example.edu]\n")
    static = tomlkit.loads(render(paths, registry)[paths.traefik_toml].content.decode()).unwrap()
    acme = static["certificatesResolvers"]["hardway"]["acme"]
    assert acme["caServer"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["httpChallenge"] == {"entryPoint": "http-redirect"}
    write_config(paths, "https:\n  enabled: true\n  letsencrypt:\n    domains: [a.example.edu]\n"
                        "    staging: true\n")
    static = tomlkit.loads(render(paths, registry)[paths.traefik_toml].content.decode()).unwrap()
    staging = static["certificatesResolvers"]["hardway"]["acme"]
    assert "staging" in staging["caServer"]
    # another CA, another account store: staging's account never meets production
    assert staging["storage"] != acme["storage"]


def test_self_signed_pair_is_made_once_for_the_names(tmp_path):
    c, k = tmp_path / "s.crt", tmp_path / "s.key"
    assert ensure_self_signed(c, k, ["hub.lab", "127.0.0.1"]) is True
    first = c.read_bytes()
    assert (k.stat().st_mode & 0o777) == 0o600
    assert ensure_self_signed(c, k, ["127.0.0.1", "hub.lab"]) is False
    assert c.read_bytes() == first
    pair = tls.load_pair(c, k)
    assert sorted(pair.names) == ["127.0.0.1", "hub.lab"]
    assert ensure_self_signed(c, k, ["other.lab"]) is True
    assert tls.load_pair(c, k).names == ("other.lab",)


def test_trusted_proxies_for_reverse_proxy_mode(paths, registry):
    write_config(paths, "http:\n  address: 127.0.0.1\n  port: 8000\n"
                        "  trusted_proxies: [127.0.0.1/32]\n")
    static = tomlkit.loads(render(paths, registry)[paths.traefik_toml].content.decode()).unwrap()
    ep = static["entryPoints"]["http"]
    assert ep["address"] == "127.0.0.1:8000"
    assert ep["forwardedHeaders"] == {"trustedIPs": ["127.0.0.1/32"]}


def test_turning_https_on_leaves_port_80s_socket_open(paths, registry, tmp_path):
    """Port 80 keeps its socket (only its entry point's name, in a drop-in, changes):
    systemd re-reads the name at daemon-reload; the new HTTPS port gets a new socket."""
    from hardway.apply import transaction as txn
    from hardway.ops.install import restart_plan

    before = render(paths, registry)
    cert, key = make_cert(tmp_path)
    write_config(paths, files_config(cert, key))
    after = render(paths, registry)
    changed = [(f, "changed") for path, f in after.items()
               if path not in before or before[path].content != f.content]
    port80 = paths.unit("jupyterhub-proxy-80.socket")
    assert port80 not in {f.path for f, _ in changed}
    assert port80.parent / "jupyterhub-proxy-80.socket.d" / "entry-point.conf" in {
        f.path for f, _ in changed}
    daemon_reload, restart = restart_plan(changed)
    assert daemon_reload and txn.is_unit_file(
        port80.parent / "jupyterhub-proxy-80.socket.d" / "entry-point.conf")
    assert restart == {"jupyterhub-proxy.service", "jupyterhub-proxy-443.socket"}
