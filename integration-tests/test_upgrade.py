"""Issue 12 on a booted host: a hub installed with JupyterHub 5.5.4 chosen, with 20 users
(files in their homes, 5 servers running), upgraded to hardway's pinned 6.1.1.

In order, on one container:
1. bootstrap.py --jupyterhub 5.5.4: the hub runs 5.5.4; 20 users log in and start a
   server at once, 15 stop again; each home gets a file;
2. the upgrade made to fail: a process holds a write lock on the SQLite database
   (BEGIN IMMEDIATE: reads pass, the migration's writes cannot) while `hardway upgrade`
   runs: it fails naming the migration, the lock and the backup; the database, the
   environments and the hub (5.5.4, answering) are as before; the 5 servers still run;
3. the upgrade again, lock gone: database backed up, migrated, the hub answers with
   6.1.1; every user logs in with the same password (a wrong one is still refused),
   alice is still an admin, the files are intact, the 5 servers kept running (same PIDs)
   and answered through the proxy the whole time (a request loop per server counts
   failures);
4. going back to 5.5.4 is refused before anything changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest
import requests
from conftest import Installed, install_fresh, record
from harness import Container
from hubclient import HubUser, RequestLoop, wait_for_hub
from scenarios import class_arrives

OLD, NEW = "5.5.4", "6.1.1"
USERS = [f"u{i:02d}" for i in range(1, 21)]
RUNNING = USERS[:5]
DB = "/var/lib/hardway/jupyterhub.sqlite"
BACKUPS = "/var/backups/hardway/database"


def password(name: str) -> str:
    return f"pw-{name}-long-enough"  # what scenarios.class_arrives logs in with


def hub_version(base: str) -> str:
    return requests.get(base + "/hub/api/", timeout=10).json()["version"]


def link(c: Container, name: str) -> str:
    return os.readlink(c.path(f"/opt/hardway/{name}"))


def server_pids(c: Container) -> dict[str, str]:
    return {n: c.run(["systemctl", "show", "-P", "MainPID",
                      f"jupyter-{n}-singleuser"]).stdout.strip() for n in RUNNING}


def hw(c: Container, *args: str, check: bool = True, timeout: float = 900):
    r = c.run(["hardway", *args], check=False, timeout=timeout)
    if check:
        assert r.returncode == 0, f"hardway {' '.join(args)}:\n{r.stdout[-4000:]}\n{r.stderr}"
    return r


def upgrade_while_polled(c: Container, users: list[HubUser], interval: float
                         ) -> tuple[subprocess.CompletedProcess[str], float, int, list[int]]:
    """`hardway upgrade` while each user's server is polled through the proxy every
    ``interval`` s: (its result, its seconds, requests made, the failed ones' statuses)."""
    loops = [RequestLoop(u, f"/user/{u.name}/api/status", interval=interval) for u in users]
    with contextlib.ExitStack() as polling:
        for loop in loops:
            polling.enter_context(loop)
        t0 = time.monotonic()
        r = hw(c, "upgrade", timeout=1200)
        took = time.monotonic() - t0
    return (r, took, sum(len(loop.statuses) for loop in loops),
            [s for loop in loops for s in loop.failed])


@pytest.fixture(scope="module")
def hub():
    yield from install_fresh("hw-upgrade", extra=("--jupyterhub", OLD),
                             password_prefix="upgrade-")


def test_1_installed_with_the_chosen_jupyterhub(hub: Installed):
    c = hub.c
    assert hub_version(hub.base) == OLD
    assert hw(c, "config", "get", "versions.jupyterhub").stdout.strip() == OLD
    user_python = c.path("/opt/hardway/user/bin/python")
    assert user_python.exists()
    assert c.run(["/opt/hardway/user/bin/python", "-c",
                  "import jupyterhub; print(jupyterhub.__version__)"]).stdout.strip() == OLD
    admin = HubUser(hub.base, "alice", hub.admin_password).sign_in()
    result = class_arrives(hub.base, len(USERS), prefix="u", admin=admin)
    assert not result.failures, result.failures
    for name in USERS[len(RUNNING):]:
        r = admin.api("DELETE", f"/hub/api/users/{name}/server")
        assert r.status_code in (202, 204), r.text
    for name in USERS:
        c.run(["bash", "-c", f"printf '%s' 'notes of {name}' > /home/jupyter-{name}/notes.txt"
                             f" && chown jupyter-{name}: /home/jupyter-{name}/notes.txt"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [u["name"] for u in admin.api("GET", "/hub/api/users").json()
                   if u.get("servers")]
        if sorted(running) == RUNNING:
            break
        time.sleep(1)
    assert sorted(running) == RUNNING


def test_2_a_failed_migration_puts_everything_back(hub: Installed):
    c = hub.c
    before = {n: link(c, n) for n in ("hub", "user")}
    pids = server_pids(c)
    hw(c, "config", "set", "versions.jupyterhub", NEW)
    # reads pass (the backup), writes wait: the migration cannot take its write lock
    c.run(["systemd-run", "--unit=hw-db-locker", "--quiet", "python3", "-c",
           "import sqlite3, time\n"
           f"c = sqlite3.connect({DB!r}, isolation_level=None)\n"
           "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep(900)\n"])
    try:
        deadline = time.monotonic() + 30
        while "locked" not in c.run(["journalctl", "-u", "hw-db-locker", "-o", "cat"],
                                    check=False).stdout:
            assert time.monotonic() < deadline, "the locker never took its lock"
            time.sleep(0.3)
        r = hw(c, "upgrade", check=False, timeout=1200)
    finally:
        c.run(["systemctl", "stop", "hw-db-locker"], check=False)
    text = r.stdout + r.stderr
    record("upgrade-failed-migration", {"figure": r.returncode, "unit": "exit status",
                                        "output_tail": text[-1500:]})
    assert r.returncode != 0, text[-3000:]
    assert f"the database migration from JupyterHub {OLD} to {NEW} failed" in text, text[-3000:]
    assert "database is locked" in text, text[-3000:]
    m = re.search(rf"put back from ({BACKUPS}/jupyterhub-\S+\.sqlite)", text)
    assert m, text[-3000:]
    backup = c.path(m.group(1))
    assert backup.stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in text
    # everything as before, and the old hub answers
    wait_for_hub(hub.base, 60)
    assert hub_version(hub.base) == OLD
    assert {n: link(c, n) for n in ("hub", "user")} == before
    assert server_pids(c) == pids
    con = sqlite3.connect(f"file:{c.path(DB)}?mode=ro", uri=True)
    try:
        names = {row[0] for row in con.execute("SELECT name FROM users")}
    finally:
        con.close()
    assert set(USERS) <= names
    HubUser(hub.base, "u07", password("u07")).sign_in()


def test_3_upgrade_to_the_pinned_jupyterhub(hub: Installed):
    c = hub.c
    pids = server_pids(c)
    old_hub_env = link(c, "hub")
    users = [HubUser(hub.base, n, password(n)).sign_in() for n in RUNNING]
    r, took, requests_made, failures = upgrade_while_polled(c, users, interval=0.2)
    record("upgrade-5-to-6", {
        "figure": round(took, 1), "unit": "s", "running_servers": len(RUNNING),
        "users": len(USERS), "server_requests": requests_made,
        "server_failures": len(failures),
        "how": "`hardway upgrade` from JupyterHub 5.5.4 to 6.1.1 (hub environment built "
               "beside, database backed up and migrated), 5 servers polled every 0.2 s"})
    assert re.search(rf"backed up the hub database to {BACKUPS}/jupyterhub-\S+-jupyterhub-"
                     rf"{re.escape(OLD)}\.sqlite", r.stdout), r.stdout[-3000:]
    assert f"migrated the hub database from JupyterHub {OLD} to {NEW}" in r.stdout
    assert hub_version(hub.base) == NEW
    assert link(c, "hub") != old_hub_env
    assert c.path(f"/opt/hardway/{old_hub_env}").is_dir()  # the way back is kept
    last = json.loads(c.path(f"{BACKUPS}/last-upgrade.json").read_text())
    assert (last["from"], last["to"]) == (OLD, NEW)
    # the servers kept running, and answered through the proxy the whole time
    assert server_pids(c) == pids
    assert requests_made > 50 and failures == [], failures[:20]
    # every user, the same password; a wrong one is still refused
    for name in USERS:
        HubUser(hub.base, name, password(name)).sign_in()
    wrong = HubUser(hub.base, "u03", "not-the-password-at-all").login(expect_ok=False)
    assert wrong.status_code != 302 and "Invalid username or password" in wrong.text, \
        wrong.text[:500]
    admin = HubUser(hub.base, "alice", hub.admin_password).sign_in()
    assert admin.api("GET", "/hub/api/users/alice").json()["admin"] is True
    for name in USERS:
        assert c.path(f"/home/jupyter-{name}/notes.txt").read_text() == f"notes of {name}"
    # a server started now runs the new JupyterHub from the new users' environment
    u = HubUser(hub.base, "u10", password("u10")).sign_in()
    u.start_server()
    assert u.execute("import jupyterhub; print(jupyterhub.__version__)").strip() == NEW


def test_4_going_back_is_refused_before_anything_changes(hub: Installed):
    c = hub.c
    hw(c, "config", "set", "versions.jupyterhub", OLD)
    links = {n: link(c, n) for n in ("hub", "user")}
    r = hw(c, "upgrade", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"JupyterHub {NEW} -> {OLD} goes back to an older version" in r.stderr
    assert {n: link(c, n) for n in ("hub", "user")} == links
    assert hub_version(hub.base) == NEW
    hw(c, "config", "set", "versions.jupyterhub", NEW)


def test_5_a_chosen_jupyterlab_reaches_the_next_server_start(hub: Installed):
    """versions.jupyterlab changes the users' environment only: it is built beside the one
    in use and switched to; a running server keeps the environment it started from; the
    next start gets the chosen JupyterLab."""
    c = hub.c
    lab = "4.5.11"
    links = {n: link(c, n) for n in ("hub", "user")}
    running = HubUser(hub.base, "u10", password("u10")).sign_in()  # started in test_3
    pid = c.run(["systemctl", "show", "-P", "MainPID", "jupyter-u10-singleuser"]).stdout
    hw(c, "config", "set", "versions.jupyterlab", lab)
    r = hw(c, "config", "reload", "--timeout", "300")
    assert link(c, "hub") == links["hub"], r.stdout[-2000:]
    assert link(c, "user") != links["user"], r.stdout[-2000:]
    assert c.path(f"/opt/hardway/{links['user']}").is_dir()  # in use by u10's server
    assert c.run(["systemctl", "show", "-P", "MainPID",
                  "jupyter-u10-singleuser"]).stdout == pid
    assert running.execute("1+1") == "2"
    version = "import jupyterlab; print(jupyterlab.__version__)"
    u = HubUser(hub.base, "u11", password("u11")).sign_in()
    u.start_server()
    assert u.execute(version).strip() == lab
    assert running.execute(version).strip() != lab  # still the pinned one it started with
