"""Pebble, Let's Encrypt's test ACME server (Debian package `pebble`), on 127.0.0.1 only.

Pebble validates for real: for HTTP-01 it calls http://<name>:<http_port>/.well-known/...,
for TLS-ALPN-01 it calls <name>:<tls_port>; pebble-challtestsrv is its DNS server and
answers every name with 127.0.0.1. Point http_port/tls_port at the proxy's entrypoints.

Both processes are stopped by the PIDs this module started (see ../shared/PEERS.md).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from peers import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eab_key() -> str:
    """A fresh EAB HMAC key as Pebble and Traefik (lego) want it: base64url, no padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def self_signed(cert_path: Path, key_path: Path) -> None:
    """An EC P-256 self-signed certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def served_certificate(port: int, server_name: str | None, cafile: str | None = None,
                       host: str = "127.0.0.1", timeout: float = 5) -> x509.Certificate:
    """The leaf certificate served at host:port for SNI server_name.

    With cafile the chain and the name are verified (ssl.SSLCertVerificationError if not);
    without, whatever is served is returned unverified."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.SSLContext(
        ssl.PROTOCOL_TLS_CLIENT)
    if not cafile:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise RuntimeError(f"no certificate served at {host}:{port} for {server_name}")
    return x509.load_der_x509_certificate(der)


def issuer_cn(cert: x509.Certificate) -> str:
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


class Pebble:
    """pebble + pebble-challtestsrv under a temp dir; ACME at .directory_url.

    eab: {kid: base64url HMAC key} makes an external account binding required."""

    def __init__(self, http_port: int, tls_port: int, eab: dict[str, str] | None = None,
                 port: int = 14000, mgmt_port: int = 15000, dns_port: int = 8053,
                 challtest_mgmt_port: int | None = None, timeout: float = 15):
        for exe in ("pebble", "pebble-challtestsrv"):
            if shutil.which(exe) is None:
                raise RuntimeError(f"{exe} is not installed (apt-get install pebble)")
        self.port, self.mgmt_port, self.dns_port = port, mgmt_port, dns_port
        self.eab = dict(eab or {})
        self.dir = Path(tempfile.mkdtemp(prefix="hardway-pebble-"))
        self.ca_cert_path = str(self.dir / "pebble-tls.pem")
        self.key_path = self.dir / "pebble-tls.key"
        self.directory_url = f"https://127.0.0.1:{port}/dir"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started_in = 0.0
        t0 = time.monotonic()
        try:
            self_signed(Path(self.ca_cert_path), self.key_path)
            conf: dict[str, object] = {
                "listenAddress": f"127.0.0.1:{port}",
                "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                "certificate": self.ca_cert_path,
                "privateKey": str(self.key_path),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": bool(self.eab),
            }
            if self.eab:
                conf["externalAccountMACKeys"] = self.eab
            self.config_path = self.dir / "pebble-config.json"
            self.config_path.write_text(json.dumps({"pebble": conf}, indent=2))
            cmgmt = self.challtest_mgmt = challtest_mgmt_port or free_port()
            self.challtestsrv = self._spawn(
                "challtestsrv",
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                 "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                 "-tlsalpn01", "", "-management", f"127.0.0.1:{cmgmt}"], {})
            self._wait(lambda: _connects(cmgmt), timeout, "pebble-challtestsrv")
            env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
            self.pebble = self._spawn(
                "pebble", ["pebble", "-config", str(self.config_path),
                           "-dnsserver", f"127.0.0.1:{dns_port}"], env)
            self._wait(self._directory_answers, timeout, "pebble")
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, **env})
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} not ready after {timeout} s:\n{self.logs()}")

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_cert_path)

    def _get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._ssl(), timeout=5) as r:
            return bytes(r.read())

    def _directory_answers(self) -> bool:
        if not _connects(self.port):
            return False
        try:
            return "newAccount" in json.loads(self._get(self.directory_url))
        except OSError:
            return False

    def directory(self) -> dict[str, object]:
        return dict(json.loads(self._get(self.directory_url)))

    def roots_pem(self) -> str:
        """The root of the chains Pebble issues (new at every Pebble start)."""
        return self._get(f"https://127.0.0.1:{self.mgmt_port}/roots/0").decode()

    def intermediates_pem(self) -> str:
        return self._get(f"https://127.0.0.1:{self.mgmt_port}/intermediates/0").decode()

    def write_roots(self) -> str:
        """roots_pem() written to a file in the temp dir, for cafile= arguments."""
        path = self.dir / "issued-roots.pem"
        path.write_text(self.roots_pem())
        return str(path)

    def wait_issued(self, port: int, server_name: str, timeout: float = 45,
                    host: str = "127.0.0.1") -> x509.Certificate:
        """Poll host:port (SNI server_name) until it serves a certificate that chains to
        this Pebble's root and matches the name; return that leaf.

        Until then Traefik serves "TRAEFIK DEFAULT CERT" (and, just after it starts,
        accepts connections it closes before the handshake): both are retried. A fresh
        acme.json costs Traefik an RSA-4096 account key (0.5-8 s on 2 cores) and lego may
        back off ~5 s (+-50 %) once when its first authorization poll is still pending."""
        roots = self.write_roots()
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                return served_certificate(port, server_name, cafile=roots, host=host)
            except ssl.SSLCertVerificationError as e:
                last = str(e.verify_message)
            except OSError as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)
        raise TimeoutError(f"{host}:{port} served no Pebble-issued certificate for "
                           f"{server_name} within {timeout} s (last: {last})")

    def servfail(self, host: str) -> None:
        """Make the CA's DNS answer SERVFAIL for ``host``: Pebble cannot validate it."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.challtest_mgmt}/set-servfail",
            data=json.dumps({"host": f"{host}."}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200, r.status

    def log(self) -> str:
        """Pebble's own log so far (its validations, one line each)."""
        return (self.dir / "pebble.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        for p in reversed(self.procs):  # pebble, then its DNS server
            stop_process(p)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Pebble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
