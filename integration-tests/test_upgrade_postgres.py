"""Issue 12 on a booted host with PostgreSQL as the hub database (Debian's postgresql in
the container): a hub installed with JupyterHub 5.5.4 chosen and 20 users whose servers
all run code, backed up, upgraded to hardway's pinned 6.1.1, then the archive taken
before the upgrade restored onto the upgraded hub.

In order, on one container:
1. bootstrap.py --jupyterhub 5.5.4, PostgreSQL set as hub.db_url (`file:` secret);
2. 20 users log in at once and start servers; in each a process keeps writing files in
   the home (a log it appends to, a counter it replaces); `hardway backup --homes` runs
   meanwhile: the database goes in as a `pg_dump` taken while the hub runs, the servers
   and their writers keep going;
3. `hardway upgrade` with all 20 servers running (a request loop on each through the
   proxy): a `pg_dump` is made before the migration, the migration runs, the hub answers
   with 6.1.1, every user logs in with the same password, no server restarted and no
   request failed;
4. `hardway restore` of the archive of step 2 (JupyterHub 5.5.4's database) onto the
   upgraded hub: the dump is loaded in place of the newer tables, migrated to 6.1.1 before
   the hub starts; a user added after the backup is gone, the 20 users log in, alice is an
   admin, the homes hold what the archive holds, owned by their accounts.
"""

from __future__ import annotations

import json
import re
import tarfile
import time

import pytest
from conftest import Installed, install_fresh, record
from hubclient import HubUser
from peers import PostgreSQL
from scenarios import class_arrives
from test_upgrade import NEW, OLD, hub_version, hw, password, upgrade_while_polled

USERS = [f"u{i:02d}" for i in range(1, 21)]
BACKUPS = "/var/backups/hardway/database"
ARCHIVE = "/root/before-upgrade.tar.gz"

#: what each user's server keeps doing while the hub is backed up: appends to a log and
#: replaces a counter file (write + rename), 50 times a second
WRITER = """
import os, time
home = os.path.expanduser("~")
os.makedirs(os.path.join(home, "work"), exist_ok=True)
i = 0
while True:
    i += 1
    with open(os.path.join(home, "work", "log.txt"), "a") as f:
        f.write(f"line {i}\\n")
    tmp = os.path.join(home, "work", ".counter.tmp")
    with open(tmp, "w") as f:
        f.write(str(i))
    os.replace(tmp, os.path.join(home, "work", "counter.txt"))
    time.sleep(0.02)
"""
START_WRITER = ("import subprocess, sys\n"
                f"p = subprocess.Popen([sys.executable, '-c', {WRITER!r}], "
                "start_new_session=True)\nprint(p.pid)")


def server_pids(c) -> dict[str, str]:
    return {n: c.run(["systemctl", "show", "-P", "MainPID",
                      f"jupyter-{n}-singleuser"]).stdout.strip() for n in USERS}


def counter(c, name: str) -> int:
    return int(c.path(f"/home/jupyter-{name}/work/counter.txt").read_text() or 0)


@pytest.fixture(scope="module")
def hub():
    yield from install_fresh("hw-upgrade-pg", extra=("--jupyterhub", OLD),
                             password_prefix="pg-")


@pytest.fixture(scope="module")
def pg(hub: Installed) -> PostgreSQL:
    return PostgreSQL(hub.c).install()


def test_1_the_hub_database_on_postgresql(hub: Installed, pg: PostgreSQL):
    hw(hub.c, "config", "set", "hub.db_url", f"file:{pg.url_file}")
    assert "hub.db_url = ********" in hw(hub.c, "config", "show", "hub").stdout
    r = hw(hub.c, "config", "reload", "--timeout", "120")
    assert "restarted: jupyterhub.service" in r.stdout
    assert hub_version(hub.base) == OLD
    HubUser(hub.base, "alice", hub.admin_password).sign_in()
    assert pg.sql("SELECT name, admin FROM users") == "alice|t"
    assert pg.sql("SELECT version_num FROM alembic_version")


def test_2_backup_while_20_users_run_code(hub: Installed, pg: PostgreSQL):
    c = hub.c
    admin = HubUser(hub.base, "alice", hub.admin_password).sign_in()
    result = class_arrives(hub.base, len(USERS), prefix="u", admin=admin)
    assert not result.failures, result.failures
    for name in USERS:
        HubUser(hub.base, name, password(name)).sign_in().execute(START_WRITER)
    deadline = time.monotonic() + 30
    while not all(c.path(f"/home/jupyter-{n}/work/counter.txt").exists() for n in USERS):
        assert time.monotonic() < deadline, "the writers did not start"
        time.sleep(0.5)
    before = {n: counter(c, n) for n in USERS}
    t0 = time.monotonic()
    r = hw(c, "backup", "--homes", "-o", ARCHIVE)
    took = time.monotonic() - t0
    assert f"{ARCHIVE}" in r.stdout
    # the writers and their servers went on meanwhile, and still do
    time.sleep(0.5)
    after = {n: counter(c, n) for n in USERS}
    assert all(after[n] > before[n] for n in USERS), (before, after)
    with tarfile.open(c.path(ARCHIVE)) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        manifest = json.loads(f.read())
        names = set(tar.getnames())
    record("backup-pg-20-writing", {
        "figure": round(took, 2), "unit": "s", "size_mb": round(
            c.path(ARCHIVE).stat().st_size / 1e6, 1), "entries": len(manifest["entries"]),
        "how": "`hardway backup --homes` with PostgreSQL as the hub database (pg_dump while "
               "the hub runs), 20 servers each running a process writing in its home"})
    assert manifest["jupyterhub"] == OLD
    assert manifest["pg_dump"] == "database/hub.pgdump" and "database/hub.pgdump" in names
    assert manifest["db_revision"] == pg.sql("SELECT version_num FROM alembic_version")
    assert sorted(a["name"] for a in manifest["accounts"]) == [f"jupyter-{n}" for n in USERS]
    for n in USERS:
        assert f"files/home/jupyter-{n}/work/log.txt" in names


def test_3_upgrade_with_20_servers_running(hub: Installed, pg: PostgreSQL):
    c = hub.c
    old_revision = pg.sql("SELECT version_num FROM alembic_version")
    pids = server_pids(c)
    assert all(p not in ("", "0") for p in pids.values()), pids
    users = [HubUser(hub.base, n, password(n)).sign_in() for n in USERS]
    hw(c, "config", "set", "versions.jupyterhub", NEW)
    r, took, made, failures = upgrade_while_polled(c, users, interval=0.5)
    record("upgrade-5-to-6-postgresql-20-servers", {
        "figure": round(took, 1), "unit": "s", "running_servers": len(USERS),
        "server_requests": made, "server_failures": len(failures),
        "steps": [ln.strip() for ln in r.stdout.splitlines() if "s in all)" in ln or
                  ln.startswith("[")],
        "how": "`hardway upgrade` 5.5.4 -> 6.1.1 with PostgreSQL as the hub database "
               "(pg_dump, then `jupyterhub upgrade-db`), 20 servers running, each polled "
               "every 0.5 s through the proxy"})
    m = re.search(rf"backed up the hub database to ({BACKUPS}/jupyterhub-\S+-jupyterhub-"
                  rf"{re.escape(OLD)}\.pgdump)", r.stdout)
    assert m, r.stdout[-3000:]
    dump = c.path(m.group(1))
    assert dump.stat().st_mode & 0o777 == 0o600
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert f"migrated the hub database from JupyterHub {OLD} to {NEW}" in r.stdout
    assert hub_version(hub.base) == NEW
    new_revision = pg.sql("SELECT version_num FROM alembic_version")
    assert new_revision and new_revision != old_revision
    assert server_pids(c) == pids
    assert made > 100 and failures == [], failures[:20]
    for name in USERS:
        HubUser(hub.base, name, password(name)).sign_in()
    wrong = HubUser(hub.base, "u03", "not-the-password-at-all").login(expect_ok=False)
    assert wrong.status_code != 302 and "Invalid username or password" in wrong.text


def test_4_the_archive_from_before_the_upgrade_restores_and_is_migrated(
        hub: Installed, pg: PostgreSQL):
    c = hub.c
    revision = pg.sql("SELECT version_num FROM alembic_version")
    admin = HubUser(hub.base, "alice", hub.admin_password).sign_in()
    admin.allow("late")  # added after the backup: the restore takes it away
    assert "late" in pg.sql("SELECT name FROM users").split()
    with tarfile.open(c.path(ARCHIVE)) as tar:
        def member(name: str) -> bytes:
            f = tar.extractfile(f"files/home/jupyter-{name}/work/counter.txt")
            assert f is not None
            return f.read()
        archived = {n: member(n) for n in USERS}
    t0 = time.monotonic()
    r = hw(c, "restore", ARCHIVE, timeout=900)
    took = time.monotonic() - t0
    record("restore-pg-older-jupyterhub", {
        "figure": round(took, 1), "unit": "s",
        "how": "`hardway restore` of a 5.5.4 archive (pg_dump, 20 homes) onto the 6.1.1 "
               "hub: servers stopped, files back, dump loaded, migrated, hub restarted"})
    assert "loaded the hub database into PostgreSQL" in r.stdout, r.stdout[-3000:]
    assert f"migrating the restored database from JupyterHub {OLD} to {NEW}" in r.stdout
    assert hub_version(hub.base) == NEW
    assert pg.sql("SELECT version_num FROM alembic_version") == revision
    names = pg.sql("SELECT name FROM users").split()
    assert "late" not in names and set(USERS) <= set(names)
    assert HubUser(hub.base, "alice", hub.admin_password).sign_in().api(
        "GET", "/hub/api/users/alice").json()["admin"] is True
    for name in USERS:
        HubUser(hub.base, name, password(name)).sign_in()
        inside = f"/home/jupyter-{name}/work/counter.txt"
        assert c.path(inside).read_bytes() == archived[name]
        owner = c.run(["stat", "-c", "%U:%G", inside]).stdout.strip()
        assert owner == f"jupyter-{name}:jupyter-{name}"
    # a server starts again from the restored hub
    u = HubUser(hub.base, "u05", password("u05")).sign_in()
    u.start_server()
    assert u.execute("open('work/counter.txt').read()").strip("'") == \
        archived["u05"].decode()
