"""Certificates for HTTPS: checking the files an admin gives, and making a self-signed pair
(writing it is apply's job: this module imports nothing of hardway but its errors).

The checks run when settings are validated (``hardway config set`` and ``reload``), so a
certificate that cannot work is refused before anything is written or restarted.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509

    from .settings import Settings

#: regenerate a self-signed certificate this long before it expires
RENEW_BEFORE = datetime.timedelta(days=30)
SELF_SIGNED_DAYS = 825


@dataclasses.dataclass(frozen=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes
    names: tuple[str, ...]
    not_after: datetime.datetime


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{key}: {path} is not readable (run hardway as root)") from None
    except IsADirectoryError:
        raise ConfigError(f"{key}: {path} is a directory, not a PEM file") from None


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(names)


def load_pair(cert_path: Path, key_path: Path, cert_key: str = "https.tls.cert",
              key_key: str = "https.tls.key",
              now: datetime.datetime | None = None) -> Pair:
    """Read and check a certificate chain and its private key; ConfigError naming the key
    when a file is missing, not PEM, expired, or the key does not belong to the cert."""

    return parse_pair(_read(cert_path, cert_key), _read(key_path, key_key), cert_path,
                      key_path, cert_key, key_key, now)


def parse_pair(cert_pem: bytes, key_pem: bytes, cert_path: Path, key_path: Path,
               cert_key: str = "https.tls.cert", key_key: str = "https.tls.key",
               now: datetime.datetime | None = None) -> Pair:
    """Check a certificate chain and its private key given as bytes (read from
    ``cert_path`` and ``key_path``, named in messages); ConfigError naming the key when
    either is not PEM, the pair does not match, or the certificate is out of date."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(f"{cert_key}: {cert_path} holds no PEM certificate (expected "
                          "-----BEGIN CERTIFICATE-----, leaf first, then intermediates)") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        why = "is encrypted (give an unencrypted key)" if "encrypted" in str(e) or isinstance(
            e, TypeError) else "holds no PEM private key"
        raise ConfigError(f"{key_key}: {key_path} {why}") from None
    leaf = chain[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, pub) != leaf.public_key().public_bytes(der, pub):
        raise ConfigError(f"{key_key}: {key_path} is not the private key of the certificate "
                          f"in {cert_path} ({cert_key})")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(f"{cert_key}: the certificate in {cert_path} expired on "
                          f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; give a current one")
    if leaf.not_valid_before_utc > now:
        raise ConfigError(f"{cert_key}: the certificate in {cert_path} is not valid before "
                          f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    return Pair(cert_pem, key_pem, cert_names(leaf), leaf.not_valid_after_utc)


def make_self_signed(names: list[str]) -> Pair:
    """A new EC P-256 self-signed certificate valid for ``names`` (DNS names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hardway self-signed")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Pair(cert_pem, key_pem, tuple(names), cert.not_valid_after_utc)


def self_signed_current(cert_path: Path, key_path: Path, names: list[str]) -> bool:
    """Whether the self-signed pair at the two paths is for exactly ``names`` and not
    within RENEW_BEFORE of expiry (False when missing or unreadable). Writing a new pair
    is :func:`hardway.apply.files.ensure_self_signed`'s job."""
    try:
        pair = load_pair(cert_path, key_path)
    except ConfigError:
        return False
    return (sorted(pair.names) == sorted(names) and pair.not_after - RENEW_BEFORE
            > datetime.datetime.now(datetime.timezone.utc))


def source(settings: Settings) -> str:
    """Where the certificate comes from: "off", "acme", "files" or "self-signed". Exactly
    one source may be configured when https.enabled is true."""
    if not settings["https.enabled"]:
        return "off"
    given = {
        "acme": bool(settings["https.letsencrypt.domains"]),
        "files": bool(settings["https.tls.cert"] or settings["https.tls.key"]),
        "self-signed": bool(settings["https.self_signed"]),
    }
    keys = {"acme": "https.letsencrypt.domains", "files": "https.tls.cert/https.tls.key",
            "self-signed": "https.self_signed"}
    chosen = [k for k, v in given.items() if v]
    if not chosen:
        raise ConfigError("https.enabled is true but no certificate source is set: set "
                          "https.letsencrypt.domains (ACME), or https.tls.cert and "
                          "https.tls.key (your own files), or https.self_signed true")
    if len(chosen) > 1:
        raise ConfigError("https: more than one certificate source is set ("
                          + ", ".join(keys[k] for k in chosen)
                          + "); unset all but one")
    return chosen[0]


def validate(settings: Settings) -> None:
    """The cross-key and file checks of the https.* settings."""
    mode = source(settings)
    if mode != "off" and settings["https.port"] == settings["http.port"]:
        raise ConfigError(f"https.port and http.port are both {settings['http.port']}: "
                          "HTTPS needs a port of its own (443 by default)")
    if mode == "files":
        cert, key = settings["https.tls.cert"], settings["https.tls.key"]
        if not cert or not key:
            missing = "https.tls.key" if cert else "https.tls.cert"
            raise ConfigError(f"{missing} is required with "
                              f"{'https.tls.cert' if cert else 'https.tls.key'}: give both "
                              "the certificate chain and its private key")
        load_pair(Path(cert), Path(key))
    if mode == "acme":
        kid, hmac = settings["https.letsencrypt.eab_kid"], settings["https.letsencrypt.eab_hmac"]
        if bool(kid) != bool(hmac):
            raise ConfigError("https.letsencrypt.eab_kid and https.letsencrypt.eab_hmac go "
                              "together: the CA gives both; set both or neither")
        for path in settings["https.letsencrypt.ca_certificates"]:
            try:
                from cryptography import x509

                x509.load_pem_x509_certificates(Path(path).read_bytes())
            except (OSError, ValueError):
                raise ConfigError(f"https.letsencrypt.ca_certificates: {path} is not a "
                                  "readable PEM certificate file") from None


def self_signed_names(settings: Settings) -> list[str]:
    names = list(settings["https.self_signed_names"])
    if not names:
        import socket
        from urllib.parse import urlsplit

        host = urlsplit(settings["public_url"] or "").hostname
        names = [n for n in (host, socket.gethostname(), "localhost", "127.0.0.1") if n]
    return list(dict.fromkeys(names))


TRAEFIK_PLACEHOLDER = "TRAEFIK DEFAULT CERT"


@dataclasses.dataclass(frozen=True)
class Served:
    names: tuple[str, ...]
    issuer: str
    not_after: datetime.datetime

    @property
    def placeholder(self) -> bool:
        return TRAEFIK_PLACEHOLDER in self.issuer

    def describe(self) -> str:
        left = self.not_after - datetime.datetime.now(datetime.timezone.utc)
        return (f"serving {', '.join(self.names) or '?'} issued by {self.issuer}, valid "
                f"until {self.not_after:%Y-%m-%d} ({left.days} days)")

    def expiry(self) -> str:
        left = self.not_after - datetime.datetime.now(datetime.timezone.utc)
        return (f"issued by {self.issuer}, expires {self.not_after:%Y-%m-%d} "
                f"({left.days} days)")


def served(port: int, server_name: str | None, host: str = "127.0.0.1",
           timeout: float = 5) -> Served:
    """The certificate the proxy serves at host:port for ``server_name`` (not verified:
    this says what is served, not whether a browser trusts it). OSError if nothing
    answers or the handshake fails."""
    import socket
    import ssl

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as conn:
        der = conn.getpeercert(binary_form=True)
    if not der:
        raise OSError("no certificate in the handshake")
    cert = x509.load_der_x509_certificate(der)
    issuer = ", ".join(str(a.value) for a in cert.issuer.get_attributes_for_oid(
        NameOID.COMMON_NAME)) or cert.issuer.rfc4514_string()
    return Served(cert_names(cert), issuer, cert.not_valid_after_utc)


def server_name(settings: Settings) -> str | None:
    """The name to ask the proxy for (SNI) when looking at what it serves."""
    mode = source(settings)
    if mode == "acme":
        return settings["https.letsencrypt.domains"][0]
    if mode == "self-signed":
        return self_signed_names(settings)[0]
    return None  # given files: Traefik serves them as the default certificate


def status_line(settings: Settings) -> str:
    """One line for `hardway status`: the source and what the proxy serves."""
    mode = source(settings)
    if mode == "off":
        return "https: off"
    try:
        s = served(settings["https.port"], server_name(settings))
    except OSError as e:
        return f"https: {mode}; nothing answers on port {settings['https.port']} ({e})"
    line = f"https: {mode}; {s.describe()}"
    if s.placeholder:
        line += ("\n  not issued yet (Traefik's placeholder): "
                 "journalctl -u jupyterhub-proxy | grep -i acme")
    return line
