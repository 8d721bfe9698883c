"""Writing rendered files: only the differences, atomically, reporting what changed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from hardway import tls
from hardway.plugin.contract import File

from .system import System


def write_atomic(path: Path, content: bytes | IO[bytes], mode: int = 0o644,
                 uid: int | None = None, gid: int | None = None) -> None:
    """Write via a temp file in the same directory: fsync, set mode/owner, rename.

    Readers (Traefik's watcher, the hub) see the old file or the new one, never a mix;
    the temp name does not end in the target's suffix, so watchers ignore it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:  # a stream (a backup member): copied, never held whole in memory
                shutil.copyfileobj(content, f, 1 << 20)
            f.flush()
            if uid is not None or gid is not None:  # owner first: a chown clears setuid
                os.fchown(f.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def differs(file: File, uid: int | None, gid: int | None) -> str | None:
    """Why ``file`` on disk differs from what was rendered ("content", "mode"...), or None.

    Nothing here follows a symbolic link: a link (or any non-regular file) planted where
    a rendered file belongs is reported and then replaced by the rename in
    :func:`write_atomic`, which swaps the link itself and never writes through it.
    """
    try:
        st = os.lstat(file.path)
    except FileNotFoundError:
        return "new"
    if stat.S_ISLNK(st.st_mode):
        return (f"a symbolic link to {os.readlink(file.path)} was there: refused to follow "
                "it, replaced it with the file")
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file: replaced"
    if read_nofollow(file.path) != file.content:
        return "content"
    if stat.S_IMODE(st.st_mode) != file.mode:
        return "mode"
    if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
        return "owner"
    return None


def read_nofollow(path: Path) -> bytes:
    """A regular file's bytes; refuses (OSError) a symbolic link or a FIFO in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read()


def secure_owner(path: Path, mode: int, uid: int, gid: int) -> str | None:
    """Give a file in a directory a less privileged user can write (Traefik's ACME
    store) this mode and owner, through an O_NOFOLLOW descriptor: a planted symbolic link
    (to /etc/shadow, say) is refused and named, never chowned or chmodded through.
    Returns a line saying what was done or refused, or None when nothing had to change."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if os.path.islink(path):
            return (f"refused {path}: a symbolic link (to {os.readlink(path)}), not "
                    "followed; remove it")
        return f"skipped {path}: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"refused {path}: not a regular file; remove it"
        if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid):
            return None
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        return f"made {path} {mode:04o} {uid}:{gid}"
    finally:
        os.close(fd)


def apply_files(files: Iterable[File], system: System | None,
                dry_run: bool = False) -> list[tuple[File, str]]:
    """Write each file that differs from disk. Returns ``(file, why)`` for each change."""
    changed = []
    for f in files:
        uid = gid = None
        if system is not None:
            uid, gid = system.ids(f.owner, f.group)
        why = differs(f, uid, gid)
        if why is None:
            continue
        if not dry_run:
            write_atomic(f.path, f.content, f.mode, uid, gid)
        changed.append((f, why))
    return changed


_held: dict[str, int] = {}


@contextlib.contextmanager
def locked(lock_file: Path, what: str = "", say: Callable[[str], None] | None = None,
           holder: Path | None = None) -> Iterator[None]:
    """An exclusive lock shared by every process that writes hardway's files, held from
    a command's first read to its last restart. Re-entrant within one process. With
    ``what`` (the command) and ``holder`` (a file in /run), the holder is named there,
    and a second command says whom it waits for (through ``say``) before it waits."""
    key = str(lock_file)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say is not None:
                who = ""
                if holder is not None:
                    with contextlib.suppress(OSError):
                        who = read_nofollow(holder).decode(errors="replace").strip()
                say(f"hardway: waiting for {who or 'another hardway command'} to finish "
                    "(one writing command at a time) ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        named = bool(what and holder is not None)
        if named:
            assert holder is not None
            with contextlib.suppress(OSError):  # who holds it: best effort
                holder.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                write_atomic(holder, f"`hardway {what}` (pid {os.getpid()})\n".encode(), 0o644)
        _held[key] = 1
        try:
            yield
        finally:
            _held[key] = 0
            if named:
                assert holder is not None
                with contextlib.suppress(OSError):
                    holder.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_down(root: Path, drop: tuple[str, ...] = (".lock",)) -> list[str]:
    """Make sure no user but root can write anything under ``root`` (an environment, a
    cache, hardway's state): group/other write bits are cleared, and lock files named in
    ``drop`` are removed, since a user who can merely *read* one can hold a lock on it and
    stall root's next package step. Links are never followed. Says what it changed."""
    if not root.is_dir() or root.is_symlink():
        return []
    fixed = 0
    dropped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name != "." else dirpath
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            if name in drop and stat.S_ISREG(st.st_mode):
                os.unlink(path)
                dropped += 1
                continue
            if st.st_mode & 0o022:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~0o022)
                finally:
                    os.close(fd)
                fixed += 1
    changes = []
    if fixed:
        changes.append(f"{root}: removed write access for other users from {fixed} entries")
    if dropped:
        changes.append(f"{root}: removed {dropped} lock file(s) users could hold")
    return changes


def ensure_dir(path: Path, mode: int, uid: int = 0, gid: int = 0) -> list[str]:
    """Make ``path`` a directory with this mode and owner; say what had to change."""
    changes = []
    if not path.is_dir():
        path.mkdir(parents=True, mode=mode)
        changes.append(f"created {path}")
    st = path.stat()
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changes.append(f"set mode {mode:o} on {path}")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changes.append(f"set owner of {path} to {uid}:{gid}")
    return changes


def ensure_self_signed(cert_path: Path, key_path: Path, names: list[str]) -> bool:
    """Keep a self-signed pair for exactly ``names`` at the two paths (key 0600); make a
    new one when missing, for other names, or within ``tls.RENEW_BEFORE`` of expiry. True
    when a new pair was written."""
    if tls.self_signed_current(cert_path, key_path, names):
        return False
    pair = tls.make_self_signed(names)
    write_atomic(key_path, pair.key_pem, 0o600, 0, 0)
    write_atomic(cert_path, pair.cert_pem, 0o644, 0, 0)
    return True


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (the sqlite3 backup API)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
