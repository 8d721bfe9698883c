"""Issue 3, acceptance 7: bootstrap refuses with one line and exit 2, installing nothing."""

from __future__ import annotations

import hashlib

import pytest
from conftest import BOOTSTRAP
from harness import Container

LEFTOVERS = ("/opt/hardway", "/etc/hardway", "/var/lib/hardway", "/var/log/hardway",
             "/usr/local/bin/hardway", "/var/cache/hardway")


def fingerprint(c: Container) -> str:
    """What an install would change: dpkg's database and hardway's paths."""
    h = hashlib.sha256(c.path("/var/lib/dpkg/status").read_bytes())
    for p in LEFTOVERS:
        h.update(f"{p}={c.path(p).exists()}".encode())
    return h.hexdigest()


def assert_refused(r, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def fresh():
    c = Container.create("hw-refusals")
    try:
        yield c
    finally:
        c.destroy()


def test_without_systemd_as_pid1(fresh):
    """The same root, not booted: PID 1 is not systemd."""
    before = fingerprint(fresh)
    r = fresh.run_unbooted(["python3", BOOTSTRAP, "--admin", "alice"])
    assert_refused(r, "systemd is not running as PID 1", "sandbox.py")
    assert fingerprint(fresh) == before


@pytest.fixture(scope="module")
def booted(fresh):
    fresh.boot()
    yield fresh
    fresh.poweroff()


def test_not_root(booted):
    before = fingerprint(booted)
    # as the README's one-liner runs it: the script on standard input
    script = booted.path(BOOTSTRAP).read_text()
    r = booted.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    "python3", "-", "--admin", "alice"], check=False, input=script)
    assert_refused(r, "must run as root")
    assert fingerprint(booted) == before


@pytest.mark.parametrize("args, words", [
    (["--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    (["--admin", "bad name!"], ["--admin 'bad name!'", "NAME:PASSWORD"]),
    (["--admin", "alice:"], ["--admin alice", "empty password"]),
    (["--wheelhouse", "/nonexistent"], ["--wheelhouse /nonexistent", "not a directory"]),
    (["--traefik-binary", "/nonexistent"], ["--traefik-binary /nonexistent"]),
])
def test_bad_flag(booted, args, words):
    before = fingerprint(booted)
    r = booted.run(["python3", BOOTSTRAP, *args], check=False)
    assert_refused(r, *words)
    assert fingerprint(booted) == before


def test_unsupported_distribution(booted):
    before = fingerprint(booted)
    booted.run(["bash", "-c", "printf 'ID=fedora\\nVERSION_ID=40\\nPRETTY_NAME=\"Fedora 40\"\\n'"
                " > /run/fake-os-release && mount --bind /run/fake-os-release /etc/os-release"])
    try:
        r = booted.run(["python3", BOOTSTRAP, "--admin", "alice"], check=False)
    finally:
        booted.run(["umount", "/etc/os-release"])
    assert_refused(r, "unsupported distribution Fedora 40", "--force")
    assert fingerprint(booted) == before


def test_old_debian_is_refused_too(booted):
    booted.run(["bash", "-c", "printf 'ID=debian\\nVERSION_ID=11\\nPRETTY_NAME=\"Debian 11\"\\n'"
                " > /run/fake-os-release && mount --bind /run/fake-os-release /etc/os-release"])
    try:
        r = booted.run(["python3", BOOTSTRAP], check=False)
    finally:
        booted.run(["umount", "/etc/os-release"])
    assert_refused(r, "unsupported distribution Debian 11")
