"""`hardway backup` and `hardway restore`: a hub's state in one root-only archive, and
back onto a machine (the same one, or a freshly bootstrapped other one).

An archive is a gzip'd tar:
  files/<path>     every file, directory and symbolic link, at its path relative to the
                   root (``files/etc/hardway/config.yaml``), with its mode; its owner and
                   group are recorded by *name*, never by uid
  database/hub.pgdump
                   the hub database when it is PostgreSQL: ``pg_dump`` in its custom
                   format (a SQLite database is a consistent copy under ``files/``)
  manifest.json    the last member: format, hardway and JupyterHub versions, the hub
                   database's schema revision, date, hostname, the trees it holds, the
                   unix accounts of hub users (with --homes) and every entry with its
                   sha256, mode, owner and group

Restore reads the whole archive and checks it against its manifest before it changes
anything: a missing or tampered member, or an archive from a newer hardway or
JupyterHub, is refused in one line and nothing is touched. An archive from an older
JupyterHub has its database migrated (`jupyterhub upgrade-db`) before the hub starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import grp
import hashlib
import io
import json
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

from hardway_plugins.spawner.systemd import ACCOUNT_MARKER, ADMIN_GROUP

from hardway import __version__
from hardway.apply.files import copy_sqlite, locked, write_atomic
from hardway.apply.system import System
from hardway.errors import ConfigError, HardwayError, UsageError
from hardway.paths import Paths
from hardway.plugin.manager import Registry, load_settings, make_manager, results
from hardway.settings import Settings

from .upgrade import db_only_config, db_url, migrate, pg_dump, pg_load, pg_revision, sqlite_file

FORMAT = 1
MANIFEST = "manifest.json"
PREFIX = "files"
#: the member holding a PostgreSQL hub database's dump
PG_DUMP = "database/hub.pgdump"
CHUNK = 1 << 20


# --- what goes in


@dataclasses.dataclass
class Tree:
    """A file or directory to archive. ``replace``: on restore, entries on the machine
    that the archive does not hold are removed (hardway's own state); homes are merged."""

    path: Path
    replace: bool = True
    #: kept in the archive for the record, never written back (install-state.json
    #: describes the environments of the machine it was made on)
    restore: bool = True


def member_name(paths: Paths, path: Path) -> str:
    """``files/<path relative to the root>`` (refuses a path outside the root)."""
    try:
        rel = path.relative_to(paths.root)
    except ValueError:
        raise HardwayError(f"{path} is outside {paths.root}: cannot go into a backup") from None
    return f"{PREFIX}/{PurePosixPath(*rel.parts)}" if rel.parts else PREFIX


def target_of(root: Path, name: str) -> Path:
    """Where member ``name`` goes under ``root``; refuses absolute names and ``..``."""
    parts = PurePosixPath(name).parts
    if (not parts or parts[0] != PREFIX or any(p in ("..", "") for p in parts)
            or name.startswith("/") or len(parts) < 2):
        raise UsageError(f"the archive holds a member named {name!r}, outside {PREFIX}/: "
                         "refused; nothing was changed")
    return root.joinpath(*parts[1:])


def hub_db(paths: Paths, settings: Settings | None) -> tuple[Path | None, str | None]:
    """(the SQLite file of the hub database, or None when there is none yet; the URL of
    a PostgreSQL one, or None)."""
    url = db_url(paths, settings) if settings is not None else f"sqlite:///{paths.hub_db}"
    path = sqlite_file(paths, url)
    if path is not None:
        return (path if path.exists() else None), None
    return None, url


def trees(paths: Paths, settings: Settings | None, registry: Registry | None) -> list[Tree]:
    """Everything of hardway's that a backup holds (the hub database aside)."""
    out = [Tree(paths.etc), Tree(paths.secrets), Tree(paths.acme_dir),
           Tree(paths.install_state, restore=False)]
    if settings is not None and registry is not None:
        for extra in results(registry.pm, "hardway_backup_paths", settings=settings,
                             paths=paths):
            out += [Tree(p) for p in extra]
        # files the settings name (a given certificate, a `file:` secret) outside the
        # trees above: without them the restored settings would not render
        from .install import secret_files

        named: list[Path] = []
        for choice in registry.selected(settings).values():
            named += registry.call(choice, "inputs", settings, paths)
        for key in settings.decl:
            named += secret_files(settings[key.name])
        out += [Tree(p, replace=False) for p in named]
    kept: list[Tree] = []
    for t in out:  # each path once, and nothing inside a tree already listed
        if not any(t.path == k.path or k.path in t.path.parents for k in kept):
            kept = [k for k in kept if t.path not in k.path.parents] + [t]
    return [t for t in kept if os.path.lexists(t.path)]


@dataclasses.dataclass
class Account:
    """A unix account of a hub user (made by the systemd spawner), by name."""

    name: str
    comment: str
    home: str
    shell: str
    group: str
    admin: bool

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def hub_accounts() -> list[Account]:
    """The unix accounts the systemd spawner made for hub users (their comment says so)."""
    try:
        admins = set(grp.getgrnam(ADMIN_GROUP).gr_mem)
    except KeyError:
        admins = set()
    out = []
    for e in pwd.getpwall():
        comment = e.pw_gecos.split(",")[0]
        if comment.startswith(ACCOUNT_MARKER):
            try:
                group = grp.getgrgid(e.pw_gid).gr_name
            except KeyError:
                group = e.pw_name
            out.append(Account(e.pw_name, comment, e.pw_dir, e.pw_shell, group,
                               e.pw_name in admins))
    return sorted(out, key=lambda a: a.name)


# --- writing an archive


def _name_of_uid(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _name_of_gid(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


class _Hashing(io.RawIOBase):
    """Reads ``size`` bytes of a file, hashing them; pads with zeros when the file
    shrank meanwhile (a user's file written during the backup), so the archive, its
    member and the recorded hash always agree."""

    def __init__(self, f: IO[bytes], size: int):
        self.f, self.left, self.h = f, size, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        self.h.update(data)
        return data


def _walk(top: Path) -> Iterator[Path]:
    """``top`` and everything under it, parents first; links are never followed."""
    yield top
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in [*sorted(filenames), *dirnames]:
                yield Path(dirpath) / name


def _add(tar: tarfile.TarFile, path: Path, name: str, skip: set[Path]) -> dict[str, Any] | None:
    if path in skip:
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:  # gone meanwhile (a user's temp file)
        return None
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uname = _name_of_uid(st.st_uid) or ""
    info.gname = _name_of_gid(st.st_gid) or ""
    entry: dict[str, Any] = {"name": name, "mode": info.mode, "owner": info.uname or None,
                             "group": info.gname or None}
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        entry["type"] = "dir"
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        tar.addfile(info)
        entry.update(type="link", target=info.linkname)
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            info.size = os.fstat(fd).st_size
            reader = _Hashing(f, info.size)
            tar.addfile(info, reader)  # type: ignore[arg-type]
        entry.update(type="file", size=info.size, sha256=reader.h.hexdigest())
    else:
        return None  # sockets, FIFOs, devices: nothing to restore
    return entry


def db_revision(db: Path) -> str | None:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def hub_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jupyterhub")
    except PackageNotFoundError:
        return None


def default_archive(paths: Paths, suffix: str = "") -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return paths.backups / f"hardway-{socket.gethostname()}-{stamp}{suffix}.tar.gz"


def output_path(paths: Paths, given: Path | None, suffix: str = "") -> Path:
    """Where to write: the default name in /var/backups/hardway, in ``given`` when it is a
    directory, else ``given`` itself (whose directory must exist)."""
    if given is None:
        return default_archive(paths, suffix)
    if given.is_dir():
        return given / default_archive(paths, suffix).name
    if not given.parent.is_dir():
        raise UsageError(f"-o {given}: the directory {given.parent} does not exist")
    if given.exists():
        raise UsageError(f"-o {given}: the file exists; give another name (nothing was "
                         "written)")
    return given


@dataclasses.dataclass
class Written:
    path: Path
    entries: int
    size: int
    revision: str | None
    accounts: int


def load_for_backup(paths: Paths) -> tuple[Settings | None, Registry | None]:
    try:
        registry = Registry(make_manager())
        return load_settings(paths, registry), registry
    except HardwayError:
        if paths.config_file.exists():
            raise
        return None, None


def backup(paths: Paths, archive: Path | None = None, homes: bool = False,
           accounts: list[Account] | None = None, suffix: str = "") -> Written:
    """Write the archive (under the writers' lock: no reload changes files meanwhile)."""
    target = output_path(paths, archive, suffix)
    with locked(paths.lock_file, "backup"):
        settings, registry = load_for_backup(paths)
        wanted = trees(paths, settings, registry)
        db, pg_url = hub_db(paths, settings)
        if homes:
            accounts = hub_accounts() if accounts is None else accounts
        else:
            accounts = []
        if target.parent == paths.backups:
            paths.backups.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(paths.backups, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, 0o600)
        entries: list[dict[str, Any]] = []
        revision = None
        skip = {paths.lock_file, target, Path(tmp)}
        try:
            with tempfile.TemporaryDirectory(prefix=".hardway-backup-",
                                             dir=target.parent) as stage, \
                    os.fdopen(fd, "wb") as raw, \
                    tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6,
                                 format=tarfile.PAX_FORMAT) as tar:
                if db is not None:
                    copy = Path(stage) / "hub.sqlite"
                    copy_sqlite(db, copy)
                    revision = db_revision(copy)
                    entry = _add(tar, copy, member_name(paths, db), set())
                    assert entry is not None
                    st = os.stat(db)
                    entry.update(mode=stat.S_IMODE(st.st_mode), owner=_name_of_uid(st.st_uid),
                                 group=_name_of_gid(st.st_gid))
                    entries.append(entry)
                elif pg_url is not None:  # a consistent snapshot while the hub runs
                    dump = Path(stage) / "hub.pgdump"
                    pg_dump(System(), pg_url, dump)
                    revision = pg_revision(System(), pg_url)
                    entry = _add(tar, dump, PG_DUMP, set())
                    assert entry is not None
                    entry.update(mode=0o600, owner="root", group="root")
                    entries.append(entry)
                roots = []
                for t in wanted:
                    roots.append({"name": member_name(paths, t.path), "replace": t.replace,
                                  "restore": t.restore})
                    for path in _walk(t.path):
                        e = _add(tar, path, member_name(paths, path), skip)
                        if e is not None:
                            entries.append(e)
                for a in accounts:
                    home = paths.root / a.home.lstrip("/")
                    roots.append({"name": member_name(paths, home), "replace": False,
                                  "restore": True, "account": a.name})
                    for path in _walk(home):
                        e = _add(tar, path, member_name(paths, path), skip)
                        if e is not None:
                            entries.append(e)
                manifest = {
                    "format": FORMAT, "hardway": __version__, "jupyterhub": hub_version(),
                    "db_revision": revision,
                    "db": member_name(paths, db) if db is not None else None,
                    "pg_dump": PG_DUMP if pg_url is not None else None,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                        timespec="seconds"),
                    "hostname": socket.gethostname(), "homes": homes,
                    "accounts": [a.as_json() for a in accounts],
                    "roots": roots, "entries": entries,
                }
                data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode = len(data), 0o600
                info.mtime = int(datetime.datetime.now().timestamp())
                tar.addfile(info, io.BytesIO(data))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return Written(target, len(entries), target.stat().st_size, revision, len(accounts))


# --- reading an archive back


@dataclasses.dataclass
class Archive:
    path: Path
    manifest: dict[str, Any]

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.manifest["entries"]}

    def accounts(self) -> list[Account]:
        return [Account(**a) for a in self.manifest.get("accounts", [])]


def _version(text: str | None) -> tuple[int, ...]:
    out = []
    for part in (text or "0").split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def newer(archive_version: str | None, ours: str | None) -> bool:
    return _version(archive_version) > _version(ours)


def check(path: Path) -> Archive:
    """Read ``path`` to the end and check every member against the manifest; refuse
    (UsageError, one line) anything that does not match. Changes nothing."""
    if not path.is_file():
        raise UsageError(f"{path}: no such archive")
    bad = f"{path} is not a hardway backup archive"
    try:
        with tarfile.open(path, "r:*") as tar:
            try:
                member = tar.getmember(MANIFEST)
                f = tar.extractfile(member)
                assert f is not None
                manifest = json.loads(f.read())
            except (KeyError, ValueError, AssertionError):
                raise UsageError(f"{bad} (no readable {MANIFEST} in it); nothing was "
                                 "changed") from None
            if not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), list):
                raise UsageError(f"{bad} ({MANIFEST} has no entries); nothing was changed")
            fmt = manifest.get("format")
            if not isinstance(fmt, int) or fmt > FORMAT:
                raise UsageError(f"{path} has archive format {fmt!r}, newer than this hardway "
                                 f"{__version__} reads ({FORMAT}): upgrade hardway first "
                                 "(re-run bootstrap)")
            if newer(manifest.get("hardway"), __version__):
                raise UsageError(f"{path} was written by hardway {manifest.get('hardway')}, "
                                 f"newer than this hardway {__version__}: upgrade hardway "
                                 "first (re-run bootstrap), then restore; nothing was changed")
            ours = hub_version()
            if ours and newer(manifest.get("jupyterhub"), ours):
                raise UsageError(f"{path} holds a hub database from JupyterHub "
                                 f"{manifest.get('jupyterhub')}, newer than the installed "
                                 f"{ours} (a database cannot be downgraded): upgrade first")
            want = {e["name"]: e for e in manifest["entries"]}
            seen: set[str] = set()
            for m in tar:
                if m.name == MANIFEST:
                    continue
                if m.name != PG_DUMP:
                    target_of(Path("/"), m.name)
                e = want.get(m.name)
                if e is None or m.name in seen:
                    raise UsageError(f"{path}: member {m.name} is not in its manifest "
                                     "(tampered or not made by hardway); nothing was changed")
                seen.add(m.name)
                kind = "dir" if m.isdir() else "link" if m.issym() else "file" if m.isfile() \
                    else "?"
                if kind != e.get("type"):
                    raise UsageError(f"{path}: {m.name} is a {kind}, its manifest says "
                                     f"{e.get('type')}; nothing was changed")
                if kind == "file":
                    h = hashlib.sha256()
                    data = tar.extractfile(m)
                    assert data is not None
                    while chunk := data.read(CHUNK):
                        h.update(chunk)
                    if h.hexdigest() != e.get("sha256"):
                        raise UsageError(f"{path}: {m.name} does not match its sha256 in the "
                                         "manifest (tampered or damaged); nothing was changed")
            missing = sorted(set(want) - seen)
            if missing:
                raise UsageError(f"{path}: {len(missing)} member(s) of the manifest are "
                                 f"missing (first: {missing[0]}); nothing was changed")
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{bad} or it is damaged ({type(e).__name__}: "
                         f"{' '.join(str(e).split()) or 'truncated'}); nothing was changed") \
            from None
    return Archive(path, manifest)


def owner_ids(owner: str | None, group: str | None, users: Mapping[str, int],
              groups: Mapping[str, int], default: tuple[int, int]) -> tuple[int, int]:
    """The ids on *this* machine of an entry recorded with owner and group names: looked
    up by name; a name this machine does not know (or none recorded) gets ``default``
    (the home's account for files in a home, root for hardway's state)."""
    uid = users.get(owner) if owner else None
    gid = groups.get(group) if group else None
    return (default[0] if uid is None else uid, default[1] if gid is None else gid)


def _no_link_between(root: Path, target: Path) -> None:
    """Refuse to write ``target`` through a symbolic link in one of its parents below
    ``root`` (a home may hold links; a later member must never be written through one)."""
    current = root
    for part in target.relative_to(root).parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise HardwayError(f"refused to write {target}: {current} is a symbolic link")


def _write_member(src: IO[bytes], target: Path, mode: int, uid: int, gid: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    write_atomic(target, src, mode, uid, gid)


def _ids() -> tuple[dict[str, int], dict[str, int]]:
    return ({e.pw_name: e.pw_uid for e in pwd.getpwall()},
            {g.gr_name: g.gr_gid for g in grp.getgrall()})


def put_back(archive: Archive, root: Path, users: Mapping[str, int] | None = None,
             groups: Mapping[str, int] | None = None,
             say: Callable[[str], None] = print) -> list[str]:
    """Write every restorable entry of a checked archive under ``root``: directories,
    then files (atomically), then links; owners by name. In the trees marked ``replace``
    entries the archive does not hold are removed. Returns what changed, in short."""
    if users is None or groups is None:
        users, groups = _ids()
    entries = archive.entries
    roots = archive.manifest.get("roots", [])
    homes = {r["name"]: r.get("account") for r in roots if r.get("account")}
    skip = [r["name"] for r in roots if not r.get("restore", True)]

    def default(name: str) -> tuple[int, int]:
        for home, account in homes.items():
            if name == home or name.startswith(home + "/"):
                return users.get(account, 0), groups.get(account, users.get(account, 0))
        return 0, 0

    def restorable(name: str) -> bool:
        return not any(name == s or name.startswith(s + "/") for s in skip)

    wanted = {n for n in entries if n.startswith(PREFIX + "/") and restorable(n)}

    def prepare(name: str) -> tuple[Path, int, int, int]:
        e = entries[name]
        target = target_of(root, name)
        _no_link_between(root, target)
        uid, gid = owner_ids(e.get("owner"), e.get("group"), users, groups, default(name))
        return target, int(e["mode"]) & 0o7777, uid, gid

    # directories first (parents before children), from the manifest alone
    for name in sorted((n for n in wanted if entries[n]["type"] == "dir"),
                       key=lambda n: (n.count("/"), n)):
        target, mode, uid, gid = prepare(name)
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, uid, gid)
        os.chmod(target, mode)
    # then files, in the archive's order (a gzip stream is read once, front to back)
    written = 0
    with tarfile.open(archive.path, "r:*") as tar:
        for m in tar:
            if m.name not in wanted or entries[m.name]["type"] != "file" or not m.isfile():
                continue
            target, mode, uid, gid = prepare(m.name)
            data = tar.extractfile(m)
            assert data is not None
            _write_member(data, target, mode, uid, gid)
            written += 1
    # links last: nothing is ever written through one made here
    for name in sorted(n for n in wanted if entries[n]["type"] == "link"):
        target, _, uid, gid = prepare(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            say(f"hardway: kept the directory {target} where the archive has a link")
            continue
        os.symlink(entries[name]["target"], target)
        os.lchown(target, uid, gid)
    removed = 0
    for r in roots:
        if not r.get("replace") or not r.get("restore", True):
            continue
        top = target_of(root, r["name"])
        if not top.is_dir() or top.is_symlink():
            continue
        for path in sorted(_walk(top), key=lambda p: -len(p.parts)):
            name = member_name(Paths(root), path)
            if name in entries or path.name == ".lock":
                continue
            if path.is_dir() and not path.is_symlink():
                if any(path.iterdir()):
                    continue
                path.rmdir()
            else:
                path.unlink()
            removed += 1
    lines = [f"restored {written} files"]
    if removed:
        lines.append(f"removed {removed} entries the archive does not hold from hardway's "
                     "state")
    return lines


# --- restore on a machine


def create_accounts(accounts: Iterable[Account], system: System) -> list[str]:
    """Make the unix accounts of the archive's homes that do not exist here, by name
    (uids are this machine's). An existing account of the same name must be the same
    hub user's (its comment), or restore stops."""
    changes = []
    for a in accounts:
        try:
            e = pwd.getpwnam(a.name)
        except KeyError:
            system.run(["useradd", "--no-create-home", "--home-dir", a.home, "--shell",
                        a.shell or "/bin/bash", "--user-group", "--comment", a.comment,
                        a.name])
            changes.append(f"created unix user {a.name}")
        else:
            if e.pw_gecos.split(",")[0] != a.comment:
                raise HardwayError(f"unix user {a.name} exists here and belongs to "
                                   f"{e.pw_gecos!r}, not {a.comment!r}: refusing to give it "
                                   "that hub user's home; rename or remove it, then restore")
        if a.admin and system.group_exists(ADMIN_GROUP):
            system.run(["usermod", "--append", "--groups", ADMIN_GROUP, a.name])
    return changes


def user_units(system: System) -> list[str]:
    """The units of users' servers (``jupyter-NAME-singleuser``), running or not."""
    try:
        proc = system.run(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                           "--type=service", "jupyter-*-singleuser.service"], check=False)
    except HardwayError:  # no systemctl: no units
        return []
    return [line.split()[0] for line in (proc.stdout or "").splitlines() if line.split()]


def validate_settings(archive: Archive, paths: Paths, registry: Registry) -> None:
    """The archive's settings must parse here and name installed plugins before anything
    is changed. (Checks that read the files settings name, a CA bundle say, run in the
    reload at the end, once those files are back.)"""
    from hardway.plugin.contract import KINDS
    from hardway.settings import merge, read_layers

    etc = member_name(paths, paths.etc)
    with tempfile.TemporaryDirectory(prefix=".hardway-restore-") as stage, \
            tarfile.open(archive.path, "r:*") as tar:
        staged = Paths(Path(stage))
        for m in tar.getmembers():
            if m.isfile() and m.name.startswith(etc + "/"):
                rel = PurePosixPath(m.name).relative_to(etc)
                if ".." in rel.parts:
                    continue
                target = staged.etc.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(m)
                assert data is not None
                target.write_bytes(data.read())
        try:
            decl = registry.declarations()
            settings = merge(decl, read_layers(staged.config_file, staged.config_d, decl))
            for kind in KINDS:
                name = settings[f"{kind}.type"]
                if name not in registry.choices[kind]:
                    raise ConfigError(f"{kind}.type is {name!r}, and no {kind} plugin of that "
                                      f"name is installed here (installed: "
                                      f"{', '.join(registry.names(kind))}); install it with "
                                      "bootstrap.py --plugin SPEC first")
        except ConfigError as e:
            msg = " ".join(str(e).split()).replace(str(staged.root), "")
            raise UsageError(f"the settings in {archive.path} do not validate on this "
                             f"machine: {msg}; nothing was changed") from None


def load_pg_dump(archive: Archive, paths: Paths, system: System,
                 out: Callable[[str], None]) -> None:
    """Load the archive's PostgreSQL dump into the database the restored settings name
    (which must exist and be reachable with them: it is the admin's server)."""
    from .install import apt_step

    settings, _ = load_for_backup(paths)
    _, url = hub_db(paths, settings)
    if url is None:
        raise HardwayError(f"{archive.path} holds a PostgreSQL dump, but the restored "
                           "settings name a SQLite database (hub.db_url): not loaded")
    if shutil.which("pg_restore") is None or shutil.which("psql") is None:
        for line in apt_step(system, ["postgresql-client"]):
            out(line)
    with tempfile.TemporaryDirectory(prefix=".hardway-restore-") as tmp, \
            tarfile.open(archive.path, "r:*") as tar:
        dump = Path(tmp) / "hub.pgdump"
        member = tar.extractfile(PG_DUMP)
        assert member is not None
        write_atomic(dump, member, 0o600)
        pg_load(system, url, dump)
    out("loaded the hub database into PostgreSQL (its tables replaced, in one transaction)")


def restore(paths: Paths, system: System, path: Path, out: Callable[[str], None] = print,
            timeout: float = 180) -> Archive:
    from .reload import reload

    archive = check(path)
    if not paths.hub_venv.is_dir() or not paths.config_file.is_file():
        raise UsageError("hardway is not installed here: run bootstrap first, then "
                         f"`hardway restore {path}`; nothing was changed")
    m = archive.manifest
    out(f"hardway: {path}: checked ({len(m['entries'])} entries) from {m.get('hostname')} at "
        f"{m.get('created')}, hardway {m.get('hardway')}, JupyterHub {m.get('jupyterhub')}, "
        f"database revision {m.get('db_revision')}")
    with locked(paths.lock_file, "restore", out):
        validate_settings(archive, paths, Registry(make_manager()))
        units = user_units(system)
        for unit in units:
            system.systemctl("stop", unit, check=False)
        from hardway.apply import transaction as txn

        from .install import HUB_UNIT, PROXY_UNIT, proxy_sockets

        # the hub first (it writes the database), then the proxy: Traefik reads its ACME
        # store only at start, so it must start after the store is back; its sockets
        # before it (a connection to one would start it again)
        system.systemctl("stop", HUB_UNIT, check=False)
        for unit in proxy_sockets(txn.units_of(txn.read_json(paths.manifest))):
            system.systemctl("stop", unit, check=False)
        system.systemctl("stop", PROXY_UNIT, check=False)
        out(f"stopped {HUB_UNIT}, {PROXY_UNIT}" + (f" and {len(units)} user server(s)"
                                                    if units else ""))
        for line in create_accounts(archive.accounts(), system):
            out(line)
        for line in put_back(archive, paths.root, say=out):
            out(line)
        if m.get("db"):
            db = target_of(paths.root, m["db"])
            for suffix in ("-journal", "-wal", "-shm"):  # this machine's, not the archive's
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{db}{suffix}").unlink()
        if m.get("pg_dump"):
            load_pg_dump(archive, paths, system, out)
        ours = hub_version()
        if m.get("jupyterhub") and ours and newer(ours, m["jupyterhub"]):
            out(f"migrating the restored database from JupyterHub {m['jupyterhub']} to "
                f"{ours} ...")
            settings, _ = load_for_backup(paths)  # the restored ones
            try:
                with db_only_config(db_url(paths, settings) if settings is not None
                                    else f"sqlite:///{paths.hub_db}") as config:
                    migrate(paths, paths.hub_venv.resolve(), out, config=config)
            except HardwayError as e:
                raise HardwayError(f"the restored database could not be migrated from "
                                   f"JupyterHub {m['jupyterhub']} to {ours}: {e}; the hub "
                                   f"stays stopped ({path} is unchanged)") from None
        out("reloading with the restored settings")
        reload(paths, system, force={"hub", "proxy"}, out=out, timeout=timeout)
    return archive
