"""Writing rendered files: only the differences, atomically, reporting what changed."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .choices import File
from .system import System


def write_atomic(path: Path, content: bytes, mode: int = 0o644,
                 uid: int | None = None, gid: int | None = None) -> None:
    """Write via a temp file in the same directory: fsync, set mode/owner, rename.

    Readers (Traefik's watcher, the hub) see the old file or the new one, never a mix;
    the temp name does not end in the target's suffix, so watchers ignore it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(f.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def differs(file: File, uid: int | None, gid: int | None) -> str | None:
    """Why ``file`` on disk differs from what was rendered ("content", "mode"...), or None."""
    try:
        st = file.path.stat()
    except FileNotFoundError:
        return "new"
    if file.path.read_bytes() != file.content:
        return "content"
    if stat.S_IMODE(st.st_mode) != file.mode:
        return "mode"
    if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
        return "owner"
    return None


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


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock shared by every process that writes hardway's files."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
