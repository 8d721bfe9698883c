"""The pieces of a JupyterHub upgrade that need no booted host (the whole path runs in
integration-tests/test_upgrade.py): versions, the direction check, database backups."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pytest

from hardway import versions
from hardway.errors import UsageError
from hardway.ops import upgrade
from hardway.paths import Paths

BOOTSTRAP = Path(__file__).parent.parent / "bootstrap" / "bootstrap.py"
spec = importlib.util.spec_from_file_location("bootstrap_for_upgrade", BOOTSTRAP)
bootstrap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bootstrap)


def test_bootstrap_offers_the_same_versions_and_uv():
    assert bootstrap.JUPYTERHUB_VERSIONS == versions.JUPYTERHUB
    assert bootstrap.UV_VERSION == versions.UV


def test_the_pinned_versions_are_the_last_choices():
    pins = (Path(versions.__file__).parent / "pins")
    assert f"jupyterhub=={versions.JUPYTERHUB[-1]}" in (pins / "hub.txt").read_text()
    assert f"jupyterlab=={versions.JUPYTERLAB[-1]}" in (pins / "user.txt").read_text()


@pytest.mark.parametrize("text, parsed", [("6.1.1", (6, 1, 1)), ("5.5", (5, 5)),
                                          ("6.1.0rc1", (6, 1, 0)), ("10.0.0", (10, 0, 0))])
def test_versions_compare_as_numbers(text, parsed):
    assert versions.as_tuple(text) == parsed


def test_overrides_only_for_what_differs_from_the_pins():
    assert versions.overrides(versions.JUPYTERHUB[-1], versions.JUPYTERLAB[-1]) == []
    assert versions.overrides("5.5.4", "4.5.11") == ["jupyterhub==5.5.4", "jupyterlab==4.5.11"]


def test_going_back_is_refused_with_the_way_out():
    upgrade.check_direction("5.5.4", "6.1.1")
    upgrade.check_direction("6.1.1", "6.1.1")
    with pytest.raises(UsageError) as e:
        upgrade.check_direction("6.1.1", "5.5.4")
    message = str(e.value)
    assert "6.1.1 -> 5.5.4" in message and "hardway restore" in message
    assert "nothing was changed" in message


def fake_env(root: Path, name: str, jupyterhub: str) -> Path:
    env = root / "opt/hardway/envs" / name
    (env / f"lib/python3.11/site-packages/jupyterhub-{jupyterhub}.dist-info").mkdir(
        parents=True)
    return env


def test_a_migration_is_needed_only_between_versions(tmp_path):
    paths = Paths(tmp_path)
    old = fake_env(tmp_path, "hub-aaa", "5.5.4")
    new = fake_env(tmp_path, "hub-bbb", "6.1.1")
    same = fake_env(tmp_path, "hub-ccc", "5.5.4")
    paths.hub_venv.symlink_to("envs/hub-aaa")
    assert upgrade.jupyterhub_version(new) == "6.1.1"
    assert upgrade.needs_migration(paths, new) == ("5.5.4", "6.1.1")
    assert upgrade.needs_migration(paths, same) is None
    assert upgrade.needs_migration(paths, old) is None  # the one running
    paths.hub_venv.unlink()
    paths.hub_venv.symlink_to("envs/hub-bbb")
    with pytest.raises(UsageError):
        upgrade.needs_migration(paths, old)


class Settings(dict):
    pass


def test_sqlite_backup_and_restore_round_trip(tmp_path):
    paths = Paths(tmp_path)
    paths.state.mkdir(parents=True)
    con = sqlite3.connect(paths.hub_db)
    con.execute("CREATE TABLE users (name TEXT)")
    con.execute("INSERT INTO users VALUES ('u01')")
    con.commit()
    con.close()
    settings = Settings({"hub.db_url": ""})
    backup = upgrade.backup_db(paths, None, settings, "jupyterhub-5.5.4")  # type: ignore[arg-type]
    assert backup.parent == paths.db_backups and backup.name.endswith("-jupyterhub-5.5.4.sqlite")
    assert backup.stat().st_mode & 0o777 == 0o600
    con = sqlite3.connect(paths.hub_db)
    con.execute("DROP TABLE users")  # what a half-done migration might leave
    con.commit()
    con.close()
    upgrade.restore_db(paths, None, settings, backup)  # type: ignore[arg-type]
    con = sqlite3.connect(paths.hub_db)
    assert con.execute("SELECT name FROM users").fetchall() == [("u01",)]
    con.close()


def test_only_the_newest_backups_are_kept(tmp_path):
    paths = Paths(tmp_path)
    paths.db_backups.mkdir(parents=True)
    for day in range(1, 9):
        (paths.db_backups / f"jupyterhub-2026110{day}T000000-jupyterhub-5.5.4.sqlite").touch()
    (paths.db_backups / "last-upgrade.json").touch()
    gone = upgrade.prune_backups(paths, kept=5)
    assert [p.name[11:19] for p in gone] == ["20261101", "20261102", "20261103"]
    left = sorted(p.name for p in paths.db_backups.iterdir())
    assert len(left) == 6 and "last-upgrade.json" in left


def test_the_postgresql_password_goes_to_a_private_file_not_the_url(tmp_path):
    url = "postgresql+psycopg://hub:s3cr:et%40x@db.internal:5433/jupyterhub?sslmode=require"
    with upgrade.pg_connection(url) as (plain, env):
        assert plain == "postgresql://hub@db.internal:5433/jupyterhub?sslmode=require"
        assert "s3cr" not in plain
        passfile = Path(env["PGPASSFILE"])
        assert passfile.stat().st_mode & 0o777 == 0o600
        assert passfile.read_text() == "*:*:*:hub:s3cr\\:et@x\n"
    assert not passfile.exists()


def test_a_failing_migration_shows_progress_and_names_the_exception(tmp_path):
    paths = Paths(tmp_path)
    paths.hub_dir.mkdir(parents=True)
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    script = env / "bin" / "jupyterhub"
    script.write_text(
        "#!/bin/sh\n"
        "echo '[I 2026-11-28 13:34:13.643 JupyterHub dbutil:129] Upgrading sqlite:///x'\n"
        "echo 'Traceback (most recent call last):' >&2\n"
        "echo '  File \"alembic/runtime.py\", line 1' >&2\n"
        "echo 'sqlite3.OperationalError: database is locked' >&2\n"
        "echo \"subprocess.CalledProcessError: Command '['alembic']' returned 1.\" >&2\n"
        "echo '' >&2\nexit 1\n")
    script.chmod(0o755)
    seen: list[str] = []
    with pytest.raises(upgrade.HardwayError) as e:
        upgrade.migrate(paths, env, seen.append, timeout=30)
    message = str(e.value)
    assert "exited 1: sqlite3.OperationalError: database is locked" in message
    assert str(paths.install_log) in message and "Traceback" not in message
    assert any("Upgrading sqlite" in line for line in seen)  # progress, as it came
    assert not any("Traceback" in line or "File " in line for line in seen)
