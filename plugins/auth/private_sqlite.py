"""The SQLite files the LTI authenticators keep in the hub's state directory (used
nonces, students' LMS identities): root-only, durable, opened the same way."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def connect(path: Path, schema: str, busy_timeout: float,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """Open ``path``, made 0600 if missing (never through a link; SQLite's -wal and -shm
    beside it take its mode), in WAL with synchronous=FULL (what a commit returned is on
    disk), with ``schema`` applied; autocommit: callers open their transactions. Raises
    OSError or sqlite3.Error."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                         check_same_thread=check_same_thread)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except sqlite3.Error:
        db.close()
        raise
    return db
