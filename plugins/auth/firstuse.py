"""auth "firstuse": a user's first login sets their password (the default).

Closed by default: only names the hub already knows may log in or claim their first
password — ``users.allowed``, ``users.admin`` (JupyterHub adds both to its database at
start) and users an admin adds on the hub's admin page. Any other name is refused and
nothing is created for it. ``auth.firstuse.create_users`` is the one switch that opens
signup to anyone who reaches the hub.

Every admin gets a password at install: the one given with ``--admin NAME:PASSWORD``,
else a generated one shown once on the operator's terminal (never in a log). A stored
password is never replaced by install: people change theirs at /hub/auth/change-password.

The hub runs :class:`hardway_plugins.auth.firstuse_hub.HardwayFirstUseAuthenticator`, which
hashes off the event loop and renders the login form's error pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dbm
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hardway.apply.files import ensure_dir, locked
from hardway.plugin import (
    Choice,
    ConfigError,
    Context,
    Key,
    Paths,
    Settings,
    hookimpl,
    hub_url,
)
from hardway.plugin import keytypes as kt

#: bcrypt hashes at most this many bytes of a password (bcrypt >= 5 refuses longer ones)
MAX_PASSWORD_BYTES = 72
#: letters and digits that cannot be mistaken for one another (no 0 O o 1 l I)
ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GENERATED_LENGTH = 20  # 20 characters of 56: about 116 bits


def lock_path(db_path: str | Path) -> Path:
    """The file whose flock serialises every use of the password database: the hub and
    ``hardway install`` are separate processes, and dbm files have no locking of their own
    (Debian's default ndbm backend neither locks nor sees another writer's changes)."""
    return Path(f"{db_path}.lock")


def create_atomically(db_path: Path) -> None:
    """Make an empty database in a directory of its own, then move its file(s) into
    place: a process killed while the backend creates one (Berkeley DB's file setup)
    leaves no half-made file that every later open refuses."""
    staging = db_path.parent / f".{db_path.name}.new"
    shutil.rmtree(staging, ignore_errors=True)  # a creation killed before
    staging.mkdir(mode=0o700)
    with dbm.open(str(staging / db_path.name), "n", 0o600):
        pass
    for made in staging.iterdir():
        os.replace(made, db_path.parent / made.name)
    staging.rmdir()


@contextlib.contextmanager
def open_passwords(db_path: str | Path) -> Iterator[Any]:
    """The password database, opened under its lock (blocking: for install only)."""
    path = Path(db_path)
    with locked(lock_path(path)):
        if dbm.whichdb(str(path)) is None:  # no database there yet
            create_atomically(path)
        with dbm.open(str(path), "c", 0o600) as db:
            yield db


async def lock_passwords_async(db_path: str | Path, timeout: float = 10.0) -> int:
    """Take the database's lock without blocking the event loop; returns the fd to close
    (closing it releases the lock). Retries while ``hardway install`` holds it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        fd = os.open(lock_path(db_path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
            if loop.time() > deadline:
                raise TimeoutError(f"{lock_path(db_path)} stayed locked for {timeout} s") from None
            await asyncio.sleep(0.02)
        except BaseException:
            os.close(fd)
            raise


def generate_password(length: int = GENERATED_LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(max(length, GENERATED_LENGTH)))


class FirstUse(Choice):
    kind = "auth"
    name = "firstuse"
    description = "Users choose their password at their first login."

    def keys(self) -> list[Key]:
        return [
            Key("auth.firstuse.min_password_length", kt.Int(1, 1024), 8,
                "Shortest password a user may choose."),
            Key("auth.firstuse.create_users", kt.Bool(), False,
                "Open signup: when true, any visitor who reaches the hub may claim any name "
                "not taken yet and so gets a hub account, a unix user and a terminal on this "
                "server. When false (the default), only names the hub already knows "
                "(users.allowed, users.admin, users added on the admin page) may log in or "
                "set their first password."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-firstuseauthenticator"]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class":
                           "hardway_plugins.auth.firstuse_hub.HardwayFirstUseAuthenticator"},
            # the section is the upstream class: traitlets config follows the class
            # hierarchy, so it configures hardway's subclass too
            "FirstUseAuthenticator": {
                "dbm_path": str(ctx.paths.firstuse_db),
                "min_password_length": settings["auth.firstuse.min_password_length"],
                "create_users": settings["auth.firstuse.create_users"],
            },
        }

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        """The password database's directory, root-only (the hub creates the file)."""
        return ensure_dir(ctx.paths.firstuse_db.parent, 0o700)

    def post_install(self, settings: Settings, ctx: Context) -> list[str]:
        """Give every admin without a stored password a first one: the password given
        with ``--admin NAME:PASSWORD``, else a generated one shown once on the terminal
        (``ctx.terminal_only``). A stored password is kept, whatever was given."""
        import bcrypt

        names = sorted({n.lower() for n in settings["users.admin"]}
                       | {n.lower() for n in ctx.admin_passwords})
        if not names:
            return []
        given = {n.lower(): p for n, p in ctx.admin_passwords.items()}
        db_path = ctx.paths.firstuse_db
        ensure_dir(db_path.parent, 0o700)
        with open_passwords(db_path) as db:
            stored = {n: db.get(n.encode()) for n in names}
        changes: list[str] = []
        new: dict[str, tuple[str, bytes]] = {}
        for name in names:
            password = given.get(name)
            if stored[name] is not None:
                if password is not None and not _matches(password, stored[name]):
                    changes.append(f"kept the current password of admin {name} (given "
                                   f"--admin {name}:... ignored; change it in the hub)")
                continue
            if password is None:
                password = generate_password(settings["auth.firstuse.min_password_length"])
            elif len(password.encode()) > MAX_PASSWORD_BYTES:
                raise ConfigError(f"--admin {name}: the password is longer than "
                                  f"{MAX_PASSWORD_BYTES} bytes, bcrypt's limit: give a "
                                  "shorter one")
            # hashed before the lock is taken again: logins never wait on bcrypt here
            new[name] = (password, bcrypt.hashpw(password.encode(), bcrypt.gensalt()))
        if not new:
            return changes
        change_url = _hub_url(settings) + "hub/auth/change-password"
        with open_passwords(db_path) as db:
            for name, (password, hashed) in new.items():
                if db.get(name.encode()) is not None:  # they logged in meanwhile: theirs wins
                    changes.append(f"kept the password admin {name} set meanwhile")
                    continue
                db[name.encode()] = hashed
                if name in given:
                    changes.append(f"set the password of admin {name}")
                else:
                    changes.append(f"generated a first password for admin {name} (shown "
                                   "once, below)")
                    ctx.terminal_only.append(
                        f"admin {name}'s first password: {password} (shown once; change "
                        f"it at {change_url})")
        return changes


def _matches(password: str, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash
        return False


def _hub_url(settings: Settings) -> str:
    url = hub_url(settings)
    return url if url.endswith("/") else url + "/"


@hookimpl
def hardway_choices() -> list[Choice]:
    return [FirstUse()]


@hookimpl
def hardway_backup_paths(settings: Settings, paths: Paths) -> list[Path]:
    """The password database (whatever files the dbm backend made, and its lock) goes
    into backups whichever authenticator is chosen now: the passwords outlive a switch."""
    return [paths.firstuse_db.parent]
