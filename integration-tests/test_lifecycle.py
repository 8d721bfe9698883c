"""Issue 12, acceptance 3 and 4 on booted hosts: a hub with HTTPS from a local Pebble,
users with passwords and files, backed up on host A; A destroyed; host B bootstrapped
fresh and the archive restored: the same users, passwords, admins, settings, the same
certificate (not re-issued), the homes owned by the right accounts. Then on B: uninstall
leaves nothing of hardway behind but the homes, the accounts and the final archive;
bootstrap + restore of that archive brings the hub back; uninstall --purge removes the
accounts, homes and archive too.

Containers share the host's ports, so A is destroyed before B boots; the archive travels
through the host (c.dir is a container's root). One Pebble serves both hosts: had B asked
it for a certificate, it would have got a new one, with another serial."""

from __future__ import annotations

import re
import secrets
import shutil
import time
from pathlib import Path

import harness
import pytest
import urllib3
from conftest import Installed, record
from cryptography.hazmat.primitives import hashes
from harness import Container
from hubclient import HubUser
from peer_acme import Pebble, served_certificate

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

HTTPS = "https://127.0.0.1"
DOMAIN = "hub.hardway.test"
USERS = ("bob", "carol")  # besides alice, the admin
GONE = ("/opt/hardway", "/var/lib/hardway", "/etc/hardway", "/var/cache/hardway",
        "/var/log/hardway", "/usr/local/bin/hardway", "/etc/systemd/system/jupyterhub.service",
        "/etc/systemd/system/jupyterhub-proxy.service",
        "/etc/systemd/system/hardway-netpolicy.service")


def hw(c: Container, *args: str, check: bool = True):
    return c.run(["hardway", *args], check=check, timeout=900)


def fingerprint(timeout: float = 30) -> tuple[str, int]:
    """(sha256, serial) of the certificate served for DOMAIN, once it is not Traefik's
    placeholder."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            cert = served_certificate(443, DOMAIN)
            last = cert
            if "TRAEFIK DEFAULT CERT" not in cert.subject.rfc4514_string():
                return cert.fingerprint(hashes.SHA256()).hex(), cert.serial_number
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no ACME certificate served for {DOMAIN}: last {last}")


def archive_path(output: str, pattern: str) -> str:
    m = re.search(pattern + r" (/\S+\.tar\.gz)", output)
    assert m, output
    return m.group(1)


def boot_and_bootstrap(name: str, password: str) -> Installed:
    c = Container.create(name)
    c.boot()
    inst = Installed(c, password)
    inst.bootstrap()
    return inst


def login(name: str, password: str) -> HubUser:
    return HubUser(HTTPS, name, password, verify=False).sign_in()


def passwords_of(names) -> dict[str, str]:
    return {n: f"{n}-{secrets.token_hex(4)}-long" for n in names}


@pytest.fixture(scope="module")
def pebble():
    with Pebble(http_port=80, tls_port=443) as p:
        yield p


def test_backup_restore_on_a_second_host_then_uninstall(pebble, tmp_path):
    t0 = time.monotonic()
    figures: dict[str, float] = {}
    # --- host A: a hub with HTTPS from Pebble, users with passwords and files
    a = boot_and_bootstrap("hw-life-a", "wonderland-" + secrets.token_hex(6))
    try:
        ca = a.c.path("/etc/hardway/pebble-ca.pem")
        shutil.copyfile(pebble.ca_cert_path, ca)
        ca.chmod(0o644)
        hw(a.c, "config", "set", "https.enabled", "true", "https.self_signed", "false",
           "https.letsencrypt.domains", DOMAIN, "https.letsencrypt.email", "admin@hardway.test",
           "https.letsencrypt.ca_server", pebble.directory_url,
           "https.letsencrypt.ca_certificates", "/etc/hardway/pebble-ca.pem",
           "https.letsencrypt.challenge", "http-01")
        hw(a.c, "config", "set", "limits.cpu", "1.5")
        out = hw(a.c, "config", "reload").stdout
        assert "certificate from the ACME CA" in out, out
        pebble.wait_issued(443, DOMAIN, timeout=30)
        cert_a = fingerprint()
        passwords = {"alice": a.admin_password, **passwords_of(USERS)}
        alice = login("alice", a.admin_password)
        alice.allow(*USERS)
        for name, pw in passwords.items():
            u = login(name, pw) if name != "alice" else alice
            u.start_server()
            assert u.execute(f"open('notes.txt', 'w').write('{name} was here'); 1") == "1"
        settings_a = hw(a.c, "config", "show").stdout
        t1 = time.monotonic()
        out = hw(a.c, "backup", "--homes").stdout  # while the three servers run
        figures["backup_s"] = round(time.monotonic() - t1, 2)
        inside = archive_path(out, "backup written to")
        assert "homes of 3 account(s)" in out, out
        mode = a.c.run(["stat", "-c", "%a %U", inside, str(Path(inside).parent)]).stdout
        assert mode.split("\n")[:2] == ["600 root", "700 root"], mode
        archive = tmp_path / "hub.tar.gz"
        shutil.copyfile(a.c.path(inside), archive)
        figures["archive_bytes"] = archive.stat().st_size
    finally:
        a.c.destroy()

    # --- host B: fresh bootstrap (another admin password), then restore
    b = boot_and_bootstrap("hw-life-b", "other-" + secrets.token_hex(6))
    try:
        shutil.copyfile(archive, b.c.path("/root/hub.tar.gz"))
        # a damaged archive is refused in one line, and nothing changes
        b.c.path("/root/bad.tar.gz").write_bytes(archive.read_bytes()[:4000])
        r = hw(b.c, "restore", "/root/bad.tar.gz", check=False)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        t1 = time.monotonic()
        hw(b.c, "restore", "/root/hub.tar.gz")
        figures["restore_s"] = round(time.monotonic() - t1, 2)
        assert hw(b.c, "config", "show").stdout == settings_a
        assert fingerprint() == cert_a, "the certificate was re-issued, not restored"
        # the same people, with the passwords they had on A (alice's from A, not B's)
        alice = login("alice", passwords["alice"])
        with pytest.raises(AssertionError):
            HubUser(HTTPS, "alice", b.admin_password, verify=False).login()
        admins = {u["name"]: u["admin"] for u in alice.api("GET", "/hub/api/users").json()}
        assert admins == {"alice": True, "bob": False, "carol": False}, admins
        for name in USERS:
            login(name, passwords[name])
        for name in ("alice", *USERS):
            owner = b.c.run(["stat", "-c", "%U %a", f"/home/jupyter-{name}/notes.txt"]).stdout
            assert owner.split()[0] == f"jupyter-{name}", owner
            text = b.c.run(["cat", f"/home/jupyter-{name}/notes.txt"]).stdout
            assert text == f"{name} was here"
        # the restored account is the spawner's: bob's server starts as it and reads it
        bob = login("bob", passwords["bob"])
        bob.start_server()
        assert bob.execute("open('notes.txt').read()") == "'bob was here'"
        assert bob.unix_user() == "jupyter-bob"

        # --- uninstall: without --yes nothing happens
        r = hw(b.c, "uninstall", check=False)
        assert r.returncode == 2 and "remove /var/lib/hardway/" in r.stdout, r
        assert b.c.path("/var/lib/hardway/jupyterhub.sqlite").exists()
        t1 = time.monotonic()
        out = hw(b.c, "uninstall", "--yes").stdout
        figures["uninstall_s"] = round(time.monotonic() - t1, 2)
        final = archive_path(out, "final backup written to")
        left = [p for p in GONE if b.c.run(["test", "-e", p], check=False).returncode == 0]
        assert left == [], left
        units = b.c.run(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                         "jupyterhub*", "hardway*", "jupyter-*"]).stdout
        assert units.strip() == "", units
        assert b.c.run(["nft", "list", "table", "inet", "hardway"], check=False).returncode != 0
        procs = b.c.run(["python3", "-c", (
            "import os, pwd\n"
            "for p in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try:\n"
            "        u = pwd.getpwuid(os.stat('/proc/' + p).st_uid).pw_name\n"
            "    except (KeyError, FileNotFoundError):\n"
            "        continue\n"
            "    if u.startswith('jupyter-') or u == 'hardway-proxy':\n"
            "        print(p, u)\n")]).stdout
        assert procs == "", procs
        busy = harness.port_holders((80, 443, 8099))
        assert busy == [], busy
        assert b.c.run(["getent", "passwd", "hardway-proxy"], check=False).returncode == 2
        for name in ("alice", *USERS):  # kept: accounts and homes
            b.c.run(["getent", "passwd", f"jupyter-{name}"])
            assert b.c.path(f"/home/jupyter-{name}/notes.txt").exists()
        assert b.c.path(final).is_file()

        # --- bootstrap again + restore the final archive: the hub is back
        b.bootstrap()
        hw(b.c, "restore", final)
        login("bob", passwords["bob"])
        assert fingerprint() == cert_a
        # --- uninstall --purge: accounts, homes and the final archive go too
        out = hw(b.c, "uninstall", "--yes", "--purge").stdout
        for name in ("alice", *USERS):
            assert b.c.run(["getent", "passwd", f"jupyter-{name}"],
                           check=False).returncode == 2
            assert not b.c.path(f"/home/jupyter-{name}").exists()
        assert not list(b.c.path("/var/backups").glob("hardway/*-uninstall.tar.gz")), out
        left = [p for p in GONE if b.c.run(["test", "-e", p], check=False).returncode == 0]
        assert left == [], left
    finally:
        b.c.destroy()
    figures["module_s"] = round(time.monotonic() - t0, 1)
    record("lifecycle", {"figure": figures, "unit": "s / bytes",
                         "how": "3 users with running servers and a file each, HTTPS from "
                                "Pebble: backup --homes, restore on a fresh host, "
                                "uninstall"})
