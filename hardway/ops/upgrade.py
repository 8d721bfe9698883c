"""Changing the hub's JupyterHub version without stranding the hub.

A new JupyterHub arrives in a new hub environment, built beside the running one (by
bootstrap.py for a new hardway, by `hardway upgrade` for a new ``versions.jupyterhub``);
`hardway install` running from it then, in its services step:

1. stops the hub (users' servers run in their own units and stay up; Traefik keeps their
   routes, so they stay reachable);
2. backs the hub database up: a consistent SQLite copy, or ``pg_dump`` for PostgreSQL,
   into /var/backups/hardway/database (the newest ``KEPT`` are kept);
3. migrates it as a step of its own: ``jupyterhub upgrade-db`` from the new environment,
   its output shown as it comes, with its own timeout (the hub's start timeout never
   cuts a migration short: the rendered config sets ``upgrade_db`` off);
4. switches the environments and starts the hub.

If the migration fails, the database is put back from the backup before anything else,
and install's rollback puts the previous files and environment back and starts the old
hub: one message says what failed and where the backup is. Going back to an older
JupyterHub is refused before anything changes (JupyterHub cannot migrate a database
down).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from hardway import versions
from hardway.apply.files import copy_sqlite, ensure_dir, write_atomic
from hardway.apply.pyenv import Env, pins_file
from hardway.apply.system import System
from hardway.errors import HardwayError, ServiceFailed, UsageError
from hardway.paths import Paths
from hardway.settings import Settings, resolve_secret

log = logging.getLogger("hardway")

#: database backups kept (the newest); older ones are removed after each new one
KEPT = 5
#: seconds `jupyterhub upgrade-db` may take (a big database on a slow disk)
MIGRATION_TIMEOUT = 3600.0


class MigrationFailed(ServiceFailed):
    """The migration failed; the database was put back from ``backup``."""


def jupyterhub_version(env: Path) -> str | None:
    """The JupyterHub version installed in a venv (from its dist-info directory's name)."""
    for dist in env.glob("lib/python3*/site-packages/jupyterhub-*.dist-info"):
        m = re.match(r"jupyterhub-([^-]+)\.dist-info$", dist.name)
        if m:
            return m.group(1)
    return None


def check_direction(old: str | None, new: str | None) -> None:
    """Refuse going back to an older JupyterHub, before anything changes."""
    if old and new and versions.as_tuple(new) < versions.as_tuple(old):
        raise UsageError(
            f"JupyterHub {old} -> {new} goes back to an older version: its database "
            f"cannot be migrated down (JupyterHub has no downgrade). Keep "
            f"versions.jupyterhub at {old} or later, or restore a backup taken before the "
            f"upgrade (`hardway restore ARCHIVE`); nothing was changed")


def needs_migration(paths: Paths, own: Path) -> tuple[str, str] | None:
    """(old, new) when the environment this hardway runs from has another JupyterHub
    than the one the hub runs now, else None."""
    from hardway.apply.pyenv import link_target

    current = link_target(paths.hub_venv)
    if current is None or current == own.resolve():
        return None
    old, new = jupyterhub_version(current), jupyterhub_version(own)
    if old is None or new is None or old == new:
        return None
    check_direction(old, new)
    return old, new


# --------------------------------------------------------------------------- database


def apt_packages(settings: Settings) -> list[str]:
    """pg_dump and pg_restore, when the hub database is PostgreSQL."""
    url = resolve_secret(settings["hub.db_url"]) or ""
    return ["postgresql-client"] if url.startswith("postgresql") else []


def db_url(paths: Paths, settings: Settings) -> str:
    return resolve_secret(settings["hub.db_url"]) or f"sqlite:///{paths.hub_db}"


def sqlite_file(paths: Paths, url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url[len("sqlite:///"):])
    return path if path.is_absolute() else paths.hub_dir / path


@contextmanager
def pg_connection(url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(a libpq URL without the password, environment naming a 0600 password file): the
    password never reaches a command line."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    password = unquote(parts.password or "")
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    with tempfile.TemporaryDirectory(prefix="hardway-pg-") as tmp:
        passfile = Path(tmp) / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            def esc(v: str) -> str:
                return v.replace("\\", "\\\\").replace(":", "\\:")
            f.write(f"*:*:*:{esc(unquote(parts.username or ''))}:{esc(password)}\n")
        yield plain, {"PGPASSFILE": str(passfile)}


def backup_db(paths: Paths, system: System, settings: Settings, label: str) -> Path:
    """Copy the hub database aside; the path of the copy. The hub is stopped."""
    ensure_dir(paths.backups, 0o700)
    ensure_dir(paths.db_backups, 0o700)
    url = db_url(paths, settings)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    db = sqlite_file(paths, url)
    if db is not None:
        dest = paths.db_backups / f"jupyterhub-{stamp}-{label}.sqlite"
        tmp = dest.with_name("." + dest.name + ".tmp")
        if db.exists():
            copy_sqlite(db, tmp)
        else:
            tmp.write_bytes(b"")  # no database yet: nothing to lose, still a record
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    else:
        dest = paths.db_backups / f"jupyterhub-{stamp}-{label}.pgdump"
        tmp = dest.with_name("." + dest.name + ".tmp")
        pg_dump(system, url, tmp)
        os.replace(tmp, dest)
    prune_backups(paths)
    return dest


def restore_db(paths: Paths, system: System, settings: Settings, backup: Path) -> None:
    url = db_url(paths, settings)
    db = sqlite_file(paths, url)
    if db is not None:
        if backup.stat().st_size == 0:
            db.unlink(missing_ok=True)
            return
        tmp = db.with_name("." + db.name + ".restore")
        shutil.copyfile(backup, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, db)  # a process still holding the old file keeps the old inode
        for suffix in ("-journal", "-wal", "-shm"):  # they belong to the replaced file
            Path(str(db) + suffix).unlink(missing_ok=True)
        return
    pg_load(system, url, backup)


def pg_dump(system: System, url: str, dest: Path) -> None:
    """``pg_dump`` of the hub database into ``dest`` (custom format, mode 0600)."""
    with pg_connection(url) as (plain, env):
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        system.run(["pg_dump", "--format=custom", "--no-owner", f"--file={dest}",
                    f"--dbname={plain}"], env=env, timeout=MIGRATION_TIMEOUT)
    os.chmod(dest, 0o600)


#: before a dump is loaded: the hub's tables go (those of a newer schema too, which a
#: restore's ``--clean`` would not know of), only tables the hub's role owns, and only in
#: its schema; in the same transaction as the load
DROP_OWN_TABLES = """DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables
           WHERE schemaname = current_schema() AND tableowner = current_user LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t.tablename);
  END LOOP; END $$;"""


def pg_load(system: System, url: str, dump: Path) -> None:
    """Replace the hub database's tables with those of ``dump`` in one transaction: on
    any error the database is as it was."""
    with pg_connection(url) as (plain, env), \
            tempfile.TemporaryDirectory(prefix="hardway-pg-load-") as tmp:
        sql = Path(tmp) / "load.sql"
        system.run(["pg_restore", "--no-owner", "--no-privileges", f"--file={sql}",
                    str(dump)], timeout=MIGRATION_TIMEOUT)
        system.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "-c", DROP_OWN_TABLES, "-f", str(sql), f"--dbname={plain}"], env=env,
                   timeout=MIGRATION_TIMEOUT)


def pg_revision(system: System, url: str) -> str | None:
    """The alembic revision of the hub's PostgreSQL database (None: no table yet)."""
    with pg_connection(url) as (plain, env):
        proc = system.run(["psql", "-X", "-tA", "-c", "SELECT version_num FROM "
                           "alembic_version", f"--dbname={plain}"], env=env, check=False,
                          timeout=60)
    out = (proc.stdout or "").strip()
    return out.splitlines()[-1].strip() if proc.returncode == 0 and out else None


def prune_backups(paths: Paths, kept: int = KEPT) -> list[Path]:
    """Keep the newest ``kept`` database backups (by name: they start with the date)."""
    found = sorted(p for p in paths.db_backups.glob("jupyterhub-*") if p.is_file())
    gone = found[:-kept] if len(found) > kept else []
    for p in gone:
        p.unlink()
    return gone


# --------------------------------------------------------------------------- migration


def migrate(paths: Paths, env: Path, out: Callable[[str], None],
            timeout: float = MIGRATION_TIMEOUT, config: Path | None = None) -> None:
    """`jupyterhub upgrade-db` from ``env`` with the hub's own config (or ``config``), in
    the hub's working directory; its output shown as it comes. Raises with its last lines
    on failure."""
    cmd = [str(env / "bin" / "jupyterhub"), "upgrade-db", "--config",
           str(config or paths.hub_config_py)]
    # JupyterHub runs `alembic` by name: the new environment's comes first on PATH
    path = f"{env / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    proc = subprocess.Popen(cmd, cwd=paths.hub_dir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path})
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            log.info("upgrade-db: %s", line)  # all of it in the install log
            if PROGRESS.match(line):  # its log lines on the terminal, not a traceback
                out(f"      | {line[-300:]}")
            if time.monotonic() > deadline:
                proc.kill()
                raise HardwayError(f"the migration did not finish within {timeout:.0f} s")
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise HardwayError(f"`jupyterhub upgrade-db` exited {code}: {reason(lines)} (its "
                           f"whole output is in {paths.install_log})")


#: what `jupyterhub upgrade-db` and alembic log (shown as progress)
PROGRESS = re.compile(r"^\[[DIWEC] \d|^(INFO|WARNING|ERROR)\s")
#: the last line of a Python traceback: "sqlite3.OperationalError: database is locked"
EXCEPTION = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit|Failed)\w*)(: .*)?$")


def reason(lines: list[str]) -> str:
    """The exception a failed command ended with (not the wrapper JupyterHub raises when
    its alembic subprocess failed: alembic's own), else its last line."""
    raised = [ln.strip() for ln in lines if EXCEPTION.match(ln)]
    causes = [ln for ln in raised if "CalledProcessError" not in ln]
    if causes or raised:
        return (causes or raised)[-1][-400:]
    text = [ln.strip() for ln in lines if ln.strip()]
    return text[-1][-400:] if text else "no output"


@contextmanager
def db_only_config(url: str) -> Iterator[Path]:
    """A JupyterHub config (mode 0600, removed after) naming only the database: for a
    migration before the hub's own config is rendered (the URL never on a command line)."""
    with tempfile.TemporaryDirectory(prefix="hardway-db-") as tmp:
        path = Path(tmp) / "jupyterhub_config.py"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"c.JupyterHub.db_url = {url!r}\n")
        yield path


def upgrade_database(paths: Paths, system: System, settings: Settings, own: Path,
                     old: str, new: str, out: Callable[[str], None]) -> list[str]:
    """Stop the hub, back the database up, migrate it with ``own``'s JupyterHub. On a
    failure the database is put back and MigrationFailed names the backup."""
    system.systemctl("stop", "jupyterhub.service")
    backup = backup_db(paths, system, settings, f"jupyterhub-{old}")
    out(f"      backed up the hub database to {backup}")
    out(f"      migrating the hub database from JupyterHub {old} to {new} ...")
    t0 = time.monotonic()
    try:
        migrate(paths, own, out)
    except BaseException as e:
        try:
            restore_db(paths, system, settings, backup)
            put_back = f"the database was put back from {backup}"
        except (HardwayError, OSError) as again:
            put_back = (f"putting the database back failed too ({again}): copy {backup} "
                        f"back by hand before starting the hub")
        if isinstance(e, HardwayError):
            raise MigrationFailed(f"the database migration from JupyterHub {old} to {new} "
                                  f"failed: {e}\n{put_back}") from None
        raise
    record = {"from": old, "to": new, "backup": str(backup), "seconds": round(
        time.monotonic() - t0, 1), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(paths.db_backups / "last-upgrade.json",
                 (json.dumps(record, indent=1) + "\n").encode(), 0o644)
    return [f"migrated the hub database from JupyterHub {old} to {new} in "
            f"{record['seconds']} s (backup: {backup})"]


# --------------------------------------------------------------------------- new hub env

SOURCE_STAMP = ".hardway-source.json"  # what bootstrap.py built a hub environment from


def hub_env_for(paths: Paths, own: Path, jupyterhub: str) -> tuple[Env, dict[str, object]]:
    """The hub environment holding this hardway (its kept wheel, or the same requirement
    from the index) and its plugins, with ``jupyterhub`` instead of the pinned version;
    and the bootstrap stamp it gets (so bootstrap.py recognises it later)."""
    try:
        stamp = json.loads((own / SOURCE_STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    wheel = stamp.get("wheel")
    if isinstance(wheel, str) and Path(wheel).is_file():
        hardway = wheel
    elif isinstance(stamp.get("source"), str) and not Path(stamp["source"]).is_dir():
        hardway = stamp["source"]
    else:
        from hardway import __version__

        raise HardwayError(
            f"the hub environment {own} was not built from a wheel or an index requirement "
            f"hardway can install again (built from {stamp.get('source') or '?'}): run "
            f"bootstrap.py again with --jupyterhub {jupyterhub} (hardway {__version__})")
    plugins = [p for p in stamp.get("plugins") or [] if isinstance(p, str)]
    env = Env(paths.hub_venv, [hardway, *plugins, f"uv=={versions.UV}"],
              pins_file("hub"), compile_bytecode=True,
              overrides=versions.overrides(jupyterhub), beside=paths.envs, seed=True,
              # the hub packages step of install keeps its own stamp in the same venv
              stamp_name=".hardway-build.json")
    new_stamp = {**stamp, "jupyterhub": None if jupyterhub == versions.JUPYTERHUB[-1]
                 else jupyterhub}
    return env, new_stamp


def build_hub_env(paths: Paths, system: System, own: Path, jupyterhub: str,
                  uv: str, wheelhouse: Path | None, out: Callable[[str], None]) -> Path:
    """Build (or find built) the hub environment for ``jupyterhub``, beside the one in use,
    without switching to it: `hardway install` run from it does that."""
    env, stamp = hub_env_for(paths, own, jupyterhub)
    for line in env.ensure(system, uv, wheelhouse, switch=False):
        out(f"      {line}")
    built = env.built
    assert built is not None
    (built / SOURCE_STAMP).write_text(json.dumps(stamp))
    return built
