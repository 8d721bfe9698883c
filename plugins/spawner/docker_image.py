"""The users' Docker image, built on this machine with no registry (groundwork, issue 13).

Two images, both made locally:

1. **base** (``hardway-base:<digest>``): ``docker import`` of a small root filesystem
   assembled from this machine's own Debian packages: the files dpkg lists for the
   dependency closure of ``BASE_PACKAGES`` (the system Python the users' environment runs
   on, its libraries, CA certificates, a shell). Nothing is downloaded and no base image
   is pulled. The digest covers the packages' names and versions, so the base is rebuilt
   only when the distribution's packages change.
2. **user** (``hardway-user:<environment id>``): ``docker build`` FROM the base, adding the
   pinned users' environment exactly as the systemd spawner runs it
   (``/opt/hardway/envs/user-ID``, and ``/opt/hardway/user`` pointing at it), a non-root
   user, and ``jupyterhub-singleuser`` as the command. The tag is the environment's
   directory name, so a new environment means a new image and the same one is never
   built twice.

What goes into the image is an allowlist, never a copy of the machine: files listed by
dpkg for the chosen packages, outside ``/etc`` except ``ETC_ALLOWED``; a generated
``/etc/passwd``, ``/etc/group`` and ``/etc/nsswitch.conf`` (no shadow files at all); the
users' environment. ``forbidden()`` names any member of an archive that must never be in
it (hardway's settings and state, shadow files, SSH keys, private keys, root's and
users' homes); the build refuses an archive with one, and the tests check the image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: what the base holds, with every package these depend on (Depends, Pre-Depends):
#: Python, and the libraries manylinux wheels expect from the system (libstdc++, libgcc_s;
#: pyzmq's wheel, which every server imports, needs libstdc++)
BASE_PACKAGES = ("python3", "ca-certificates", "bash", "coreutils", "libc-bin",
                 "libstdc++6", "libgcc-s1")
#: added when installed on this machine (nbgitpuller needs git; tini reaps zombies)
OPTIONAL_PACKAGES = ("git", "tini")
#: never followed: the package manager, init and their trees are no use in a container
SKIP_PACKAGES = frozenset({"dpkg", "apt", "debconf", "init-system-helpers", "systemd",
                           "systemd-sysv", "adduser", "passwd", "login"})
#: the only files under /etc the base takes from this machine (public configuration the
#: packages read); everything else in /etc is generated or absent
ETC_ALLOWED = ("etc/ld.so.conf", "etc/ld.so.conf.d/", "etc/python3/", "etc/python3.",
               "etc/ssl/certs/", "etc/ssl/openssl.cnf", "etc/ca-certificates.conf",
               "etc/bash.bashrc", "etc/inputrc", "etc/mime.types", "etc/gitconfig",
               "etc/debian_version", "etc/os-release", "etc/profile")
#: files no package lists but the base needs: the CA bundle update-ca-certificates makes
#: (public certificates only: the ones the admin trusts, a TLS-intercepting proxy's too)
GENERATED = ("etc/ssl/certs/ca-certificates.crt",)
#: documentation and translations: size without use in a server's image
SKIPPED_TREES = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/",
                 "usr/share/lintian/", "usr/share/bug/", "var/")
#: members that must never be in an image (relative paths, no leading slash)
FORBIDDEN = (
    re.compile(r"^etc/(shadow|gshadow)-?$"),
    re.compile(r"^etc/(hardway|ssh|sudoers\.d|sudoers|security)(/|$)"),
    re.compile(r"^etc/ssl/private(/|$)"),
    re.compile(r"^etc/machine-id$"),
    re.compile(r"^var/lib/hardway(/|$)"),
    re.compile(r"^var/(cache|log)/"),
    re.compile(r"^root/."),
    re.compile(r"^home/(?!jovyan/?$)."),
    re.compile(r"(^|/)\.ssh(/|$)"),
    re.compile(r"(^|/)id_(rsa|ecdsa|ed25519|dsa)$"),
    re.compile(r"\.(key|pem)$"),
)
#: the account servers run as inside the image (Jupyter Docker Stacks' name and ids)
USER, UID, GID = "jovyan", 1000, 100
PASSWD = (f"root:x:0:0:root:/root:/bin/bash\n"
          f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
          f"{USER}:x:{UID}:{GID}:hardway user:/home/{USER}:/bin/bash\n")
GROUP = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
DPKG = Path("/var/lib/dpkg")


def write_accounts(base: Path, entry: Any, gids: Iterable[int]) -> Path:
    """A container's /etc/passwd and /etc/group for the account ``entry`` (a
    ``pwd.struct_passwd``) and no other of this machine: its name, ids and home, its
    primary group and ``gids`` (its course groups), in ``base/NAME/`` (``base`` made
    root-only). The docker spawner mounts them read-only, so that tools asking who the
    user is (nbgrader's student id) get the account's name, as on the host."""
    import grp

    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    mine = base / entry.pw_name
    mine.mkdir(mode=0o755, exist_ok=True)
    users = [line for line in PASSWD.splitlines() if not line.startswith(f"{USER}:")]
    users.append(f"{entry.pw_name}:x:{entry.pw_uid}:{entry.pw_gid}:hardway user:"
                 f"{entry.pw_dir}:/bin/bash")
    groups = GROUP.splitlines()
    taken = {int(line.split(":")[2]) for line in groups}
    for gid in [entry.pw_gid, *gids]:
        try:
            name = grp.getgrgid(gid).gr_name
        except KeyError:
            continue
        if gid not in taken:
            groups.append(f"{name}:x:{gid}:{'' if gid == entry.pw_gid else entry.pw_name}")
            taken.add(gid)
    for name, lines in (("passwd", users), ("group", groups)):
        tmp = mine / f".{name}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o644)
        os.replace(tmp, mine / name)
    return mine


class ImageError(Exception):
    """The image cannot be built as asked (the message says why)."""


# --- which packages (pure)
@dataclass
class Package:
    name: str
    arch: str
    version: str
    depends: list[list[str]] = field(default_factory=list)  # [[a, b]] = "a | b"
    provides: list[str] = field(default_factory=list)


def _names(field_text: str) -> list[list[str]]:
    """A Depends-style field as alternatives of bare names (versions and archs dropped)."""
    out = []
    for group in field_text.split(","):
        alts = [re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")]
        alts = [a for a in alts if a]
        if alts:
            out.append(alts)
    return out


def parse_status(text: str) -> dict[str, Package]:
    """The installed packages in dpkg's status file, by name."""
    installed: dict[str, Package] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        deps = _names(fields.get("Pre-Depends", "")) + _names(fields.get("Depends", ""))
        provides = [p[0] for p in _names(fields.get("Provides", ""))]
        installed[fields["Package"]] = Package(fields["Package"], fields.get("Architecture", ""),
                                               fields.get("Version", ""), deps, provides)
    return installed


def closure(installed: dict[str, Package], wanted: Iterable[str],
            skip: frozenset[str] = SKIP_PACKAGES) -> list[Package]:
    """``wanted`` and everything they depend on, among the installed packages; a
    dependency met by several alternatives takes the first one installed (a virtual
    package: the first installed provider)."""
    providers: dict[str, list[str]] = {}
    for pkg in installed.values():
        for virtual in pkg.provides:
            providers.setdefault(virtual, []).append(pkg.name)
    seen: dict[str, Package] = {}
    todo = list(wanted)
    missing = [name for name in todo if name not in installed]
    if missing:
        raise ImageError(f"not installed on this machine: {', '.join(missing)}")
    while todo:
        name = todo.pop()
        if name in seen or name in skip:
            continue
        pkg = installed[name]
        seen[name] = pkg
        for alts in pkg.depends:
            for alt in alts:
                if alt in skip:
                    break
                found = alt if alt in installed else next(iter(providers.get(alt, [])), None)
                if found:
                    todo.append(found)
                    break
    return sorted(seen.values(), key=lambda p: p.name)


def base_digest(packages: Sequence[Package]) -> str:
    h = hashlib.sha256()
    for p in packages:
        h.update(f"{p.name} {p.arch} {p.version}\n".encode())
    h.update((PASSWD + GROUP + NSSWITCH + repr(ETC_ALLOWED + SKIPPED_TREES)).encode())
    return h.hexdigest()[:12]


# --- which files (pure)
def wanted_path(path: str) -> bool:
    """Whether a path dpkg lists (relative, no leading slash) goes into the base."""
    if path.startswith("etc/"):
        return path.startswith(ETC_ALLOWED)
    return not path.startswith(SKIPPED_TREES)


def forbidden(names: Iterable[str]) -> list[str]:
    """The members of an archive (any spelling: ``./etc/x``, ``/etc/x``, ``etc/x``) that
    must never be in a users' image."""
    bad = []
    for name in names:
        rel = re.sub(r"^(\./|/)+", "", name)
        if rel and any(p.search(rel) for p in FORBIDDEN):
            bad.append(rel)
    return bad


def dockerfile(base: str, env_dir: str, env_link: str) -> str:
    """The user image on top of ``base``: the environment comes in as ``user-env.tar``."""
    return (f"FROM {base}\n"
            "ADD user-env.tar /\n"
            'RUN ["/sbin/ldconfig"]\n'
            f"ENV PATH={env_link}/bin:/usr/local/bin:/usr/bin:/bin "
            f"HOME=/home/{USER} SHELL=/bin/bash LANG=C.UTF-8\n"
            f"LABEL org.hardway.user-env={json.dumps(env_dir)}\n"
            f"WORKDIR /home/{USER}\n"
            f"USER {UID}:{GID}\n"
            'CMD ["jupyterhub-singleuser"]\n')


# --- archives (read this machine, write a tarball)
def package_files(packages: Sequence[Package], info: Path = DPKG / "info") -> list[str]:
    """Every path dpkg lists for ``packages`` that goes into the base, relative."""
    paths: set[str] = set()
    for pkg in packages:
        listing = info / f"{pkg.name}:{pkg.arch}.list"
        if not listing.exists():
            listing = info / f"{pkg.name}.list"
        for line in listing.read_text().splitlines():
            rel = line.strip().lstrip("/")
            if rel and rel != "." and wanted_path(rel):
                paths.add(rel)
    return sorted(paths)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owned by root, nobody else may write, no timestamps or names of this machine."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if not info.mode & stat.S_ISVTX:  # /tmp stays world-writable (sticky)
        info.mode &= ~0o022
    return info


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, uid: int = 0,
             gid: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, gid
    tar.addfile(info)


def write_base_tar(dest: Path, packages: Sequence[Package], root: Path = Path("/"),
                   info: Path = DPKG / "info") -> list[str]:
    """The base root filesystem as an uncompressed tarball; returns its member names."""
    added: set[str] = set()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(rel: str) -> None:
            if rel in added or forbidden([rel]):
                return
            parent = str(PurePosixPath(rel).parent)
            if parent != ".":
                add(parent)
            src = root / rel
            try:
                st = src.lstat()
            except FileNotFoundError:  # listed by dpkg, removed by the admin: not needed
                return
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
                    or stat.S_ISLNK(st.st_mode)):
                return
            tar.add(src, arcname=rel, recursive=False, filter=_normalise)
            added.add(rel)

        # merged /usr: /bin, /lib... are links into /usr here; keep them links
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            if (root / top).is_symlink():
                add(top)
        for rel in package_files(packages, info):
            # dpkg may name a file through a linked directory (/lib/x86_64-linux-gnu/...):
            # store it once, under its real directory (the file itself may be a link)
            real_parent = os.path.realpath((root / rel).parent)
            add(os.path.relpath(os.path.join(real_parent, PurePosixPath(rel).name), root))
        for rel in GENERATED:
            add(rel)
        for rel in ("etc", "tmp", "home", "opt", "proc", "sys", "dev", "run", "var",
                    "var/tmp"):
            if rel not in added:
                _add_dir(tar, rel, 0o1777 if rel.endswith("tmp") else 0o755)
                added.add(rel)
        _add_text(tar, "etc/passwd", PASSWD)
        _add_text(tar, "etc/group", GROUP)
        _add_text(tar, "etc/nsswitch.conf", NSSWITCH)
        _add_dir(tar, f"home/{USER}", 0o755, UID, GID)
        added.update({"etc/passwd", "etc/group", "etc/nsswitch.conf", f"home/{USER}"})
    return sorted(added)


def write_env_tar(dest: Path, env_dir: Path, env_link: Path) -> int:
    """The users' environment (a real directory) and the link naming it; returns the
    number of members. Ownership is root's; nothing in it is writable by the user."""
    count = 0
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for parent in reversed(env_dir.parents[:-1]):
            _add_dir(tar, str(parent).lstrip("/"))
        for path in [env_dir, *sorted(env_dir.rglob("*"))]:
            rel = str(path).lstrip("/")
            if forbidden([rel]) or path.name == ".hardway-installing":
                continue
            tar.add(path, arcname=rel, recursive=False, filter=_normalise)
            count += 1
        link = tarfile.TarInfo(str(env_link).lstrip("/"))
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, os.path.relpath(
            env_dir, env_link.parent), 0o777
        tar.addfile(link)
    return count + 1


# --- docker (side effects through ``run``)
Run = Callable[[Sequence[str]], str]


def _run(cmd: Sequence[str]) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def image_exists(run: Run, tag: str) -> bool:
    try:
        run(["docker", "image", "inspect", "--format", "{{.Id}}", tag])
    except ImageError:
        return False
    return True


@dataclass
class Built:
    base: str
    image: str
    seconds: dict[str, float]
    sizes: dict[str, int]
    base_members: int
    env_members: int


def build(env_link: Path = Path("/opt/hardway/user"), run: Run = _run,
          status: Path = DPKG / "status", work: Path | None = None) -> Built:
    """Build (or find) the base and the user image for the environment ``env_link``
    points at; returns their tags and what it took."""
    env_dir = env_link.resolve()
    if not (env_dir / "bin" / "jupyterhub-singleuser").exists():
        raise ImageError(f"{env_link} holds no users' environment "
                         f"(no {env_dir}/bin/jupyterhub-singleuser)")
    installed = parse_status(status.read_text())
    wanted = [*BASE_PACKAGES, *(p for p in OPTIONAL_PACKAGES if p in installed)]
    packages = closure(installed, wanted)
    base = f"hardway-base:{base_digest(packages)}"
    image = f"hardway-user:{env_dir.name}"
    seconds: dict[str, float] = {}
    sizes: dict[str, int] = {}
    base_members = env_members = 0
    with tempfile.TemporaryDirectory(prefix="hardway-image-", dir=work) as tmp:
        t0 = time.monotonic()
        if not image_exists(run, base):
            tarball = Path(tmp) / "base.tar"
            members = write_base_tar(tarball, packages)
            base_members = len(members)
            sizes["base_tar"] = tarball.stat().st_size
            seconds["base_tar"] = time.monotonic() - t0
            run(["docker", "import", "--change", "CMD [\"/bin/bash\"]", str(tarball), base])
            tarball.unlink()
            seconds["base_import"] = time.monotonic() - t0 - seconds["base_tar"]
        t1 = time.monotonic()
        if not image_exists(run, image):
            context = Path(tmp) / "context"
            context.mkdir()
            env_members = write_env_tar(context / "user-env.tar", env_dir, env_link)
            sizes["env_tar"] = (context / "user-env.tar").stat().st_size
            (context / "Dockerfile").write_text(dockerfile(base, str(env_dir), str(env_link)))
            seconds["env_tar"] = time.monotonic() - t1
            run(["docker", "build", "--network", "none", "-q", "-t", image, str(context)])
            seconds["build"] = time.monotonic() - t1 - seconds["env_tar"]
    for name, tag in (("base", base), ("image", image)):
        sizes[name] = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", tag]))
    return Built(base, image, seconds, sizes, base_members, env_members)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardway_plugins.spawner.docker_image",
                                     description="build the users' image locally")
    parser.add_argument("--env", default="/opt/hardway/user", type=Path,
                        help="the users' environment (default: %(default)s)")
    parser.add_argument("--work", type=Path, help="where the build's temporary files go")
    args = parser.parse_args(argv)
    try:
        built = build(args.env, work=args.work)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(built.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
