"""Issue 11 on a booted host: changes that survive a kill, a full disk and a second
writer; files no longer rendered go; a dry run touches nothing."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import install_fresh
from hubclient import HubUser
from test_install import unit_props

HUB = "jupyterhub.service"
PENDING = "/var/lib/hardway/pending-change.json"

#: stands in for systemctl in front of the real one: with the flag file present, a hub
#: restart blocks (so the test can kill `hardway config reload` between writing its
#: files and restarting the hub, deterministically)
BLOCKING_SYSTEMCTL = """#!/bin/sh
if [ -e /run/hw-test-block ] && [ "$1" = restart ] && [ "$2" = jupyterhub.service ]; then
  touch /run/hw-test-blocked
  exec sleep 3600
fi
exec /usr/bin/systemctl "$@"
"""


@pytest.fixture(scope="module")
def hub():
    yield from install_fresh("hw-changes")


def hw(hub, *args: str, check: bool = True):
    return hub.c.run(["hardway", *args], check=check, timeout=600)


def hub_pid(hub) -> str:
    return unit_props(hub.c, HUB, "MainPID")["MainPID"]


def answers() -> bool:
    try:
        return requests.get("http://127.0.0.1/hub/api/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


SPAWN = """
import os, subprocess, sys
with open(sys.argv[1], "wb") as log:
    p = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})  # a SIGKILL keeps it
print(p.pid)
"""


def background(c, cmd: str, log: str) -> int:
    """Start ``cmd`` in a session of its own inside the container: its pid is its
    process group's id, so `kill -- -PID` reaches it and every child."""
    return int(c.run(["python3", "-c", SPAWN, log, *cmd.split()]).stdout.strip())


def wait_for(c, test: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while c.run(test, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"timed out waiting for: {' '.join(test)}"
        time.sleep(0.1)


def test_01_reload_killed_between_files_and_restart_is_finished_by_the_next_command(hub):
    c = hub.c
    before = hub_pid(hub)
    hw(hub, "config", "set", "limits.memory", "1G")
    c.run(["bash", "-c", f"cat > /usr/local/sbin/systemctl <<'EOF'\n{BLOCKING_SYSTEMCTL}EOF\n"
                         "chmod 755 /usr/local/sbin/systemctl && touch /run/hw-test-block"])
    try:
        pid = background(c, "hardway config reload", "/root/reload.log")
        wait_for(c, ["test", "-e", "/run/hw-test-blocked"])
        # the new files are written, the record of the change is there, the hub still
        # runs the old ones: SIGKILL the whole command now
        assert '"mem_limit": "1G"' in c.run(["cat", "/var/lib/hardway/hub/hub.json"]).stdout
        c.run(["test", "-s", PENDING])
        assert hub_pid(hub) == before
        c.run(["bash", "-c", f"kill -KILL -- -{pid}"])  # bash's own kill: no procps here
    finally:
        c.run(["rm", "-f", "/usr/local/sbin/systemctl", "/run/hw-test-block",
               "/run/hw-test-blocked"])
    assert "changing /var/lib/hardway/hub/hub.json" in c.run(["cat", "/root/reload.log"]).stdout
    # without the record, a reload would now find no changed file and restart nothing
    r = hw(hub, "config", "show", "limits.memory")
    assert "`hardway config reload` (pid" in r.stdout and "was interrupted" in r.stdout, r.stdout
    assert "finished the interrupted `hardway config reload`" in r.stdout, r.stdout
    assert "limits.memory = 1G" in r.stdout
    assert c.run(["test", "-e", PENDING], check=False).returncode == 1
    assert hub_pid(hub) != before
    # the hub runs what config show says: a new server gets the 1G limit
    HubUser(hub.base, "alice", hub.admin_password).sign_in().allow("bob")
    HubUser(hub.base, "bob", "bob-password-long").sign_in(start_server=True)
    assert unit_props(c, "jupyter-bob-singleuser", "MemoryMax")["MemoryMax"] == "1073741824"
    out = hw(hub, "config", "reload").stdout
    assert "nothing changed; nothing restarted" in out, out


def test_02_a_full_disk_during_reload_leaves_the_old_files_serving(hub):
    c = hub.c
    hw(hub, "config", "set", "limits.cpu", "1.5")
    before = hub_pid(hub)
    # the state directory on a small tmpfs holding a copy of it, filled to the last block
    c.run(["bash", "-c", """set -e
        used=$(du -sk /var/lib/hardway | cut -f1)
        mkdir -p /run/hw-full
        mount -t tmpfs -o size=$((used + 256))k,mode=0711 tmpfs /run/hw-full
        cp -a /var/lib/hardway/. /run/hw-full/
        dd if=/dev/zero of=/run/hw-full/filler bs=4k 2>/dev/null || true
        mount --bind /run/hw-full /var/lib/hardway"""])
    try:
        tree = ["bash", "-c", "cd /var/lib/hardway && find . -type f ! -name filler "
                              "! -name 'jupyterhub.sqlite*' -print0 | sort -z | "
                              "xargs -0 sha256sum"]
        was = c.run(tree).stdout
        r = hw(hub, "config", "reload", check=False)
        assert r.returncode == 1, (r.stdout, r.stderr)
        err = r.stderr.strip()
        assert err.count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
        assert "no space left on the device holding /var/lib/hardway" in err, err
        assert "nothing was changed" in err, err
        assert c.run(tree).stdout == was
        assert hub_pid(hub) == before and answers()
    finally:
        c.run(["bash", "-c", "umount /var/lib/hardway; umount /run/hw-full"], check=False)
    assert answers()
    hw(hub, "config", "reload")
    assert hub_pid(hub) != before and answers()


def test_03_install_and_reload_never_interleave(hub):
    c = hub.c
    hw(hub, "config", "set", "limits.cpu", "2")
    pid = background(c, "hardway install --admin alice", "/root/install.log")
    wait_for(c, ["grep", "-q", "hardway install", "/run/hardway/lock-holder"], timeout=60)
    r = hw(hub, "config", "reload")
    assert f"waiting for `hardway install` (pid {pid}) to finish" in r.stdout, r.stdout
    wait_for(c, ["bash", "-c", f"! kill -0 {pid} 2>/dev/null"], timeout=300)
    log = c.run(["cat", "/root/install.log"]).stdout
    assert "hardway: install finished" in log or "nothing to change" in log, log
    # the install applied limits.cpu; the reload, after it, had nothing left to do
    assert "nothing changed; nothing restarted" in r.stdout, r.stdout
    assert c.run(["test", "-e", PENDING], check=False).returncode == 1
    assert answers()
    assert "nothing changed" in hw(hub, "config", "reload").stdout


PLUGIN = '''
from hardway.plugin import hookimpl


@hookimpl
def hardway_traefik_dynamic(settings, ctx):
    return {"http": {
        "routers": {"hw-probe": {"rule": "Path(`/hw-plugin-probe`)", "service": "noop@internal",
                                 "middlewares": ["hw-probe-redirect"], "priority": 10000}},
        "middlewares": {"hw-probe-redirect": {"redirectRegex": {
            "regex": ".*", "replacement": "https://plugin.invalid/probe"}}}}}
'''

DIST = "/opt/hardway/hub/lib/python3.11/site-packages"


def probe() -> str:
    r = requests.get("http://127.0.0.1/hw-plugin-probe", allow_redirects=False, timeout=5)
    return r.headers.get("Location", "")


def eventually(check, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_04_a_removed_plugins_route_file_goes_and_a_dry_run_touches_nothing(hub):
    c = hub.c
    rules = "/var/lib/hardway/proxy/rules/50-plugins.toml"
    c.run(["bash", "-c", f"""set -e
        cat > {DIST}/hw_probe_plugin.py <<'EOF'{PLUGIN}EOF
        mkdir -p {DIST}/hw_probe_plugin-0.1.dist-info
        cd {DIST}/hw_probe_plugin-0.1.dist-info
        printf 'Metadata-Version: 2.1\\nName: hw-probe-plugin\\nVersion: 0.1\\n' > METADATA
        printf '[hardway]\\nprobe = hw_probe_plugin\\n' > entry_points.txt
        printf 'hw_probe_plugin.py,,\\n' > RECORD"""])
    try:
        hw(hub, "config", "reload")
        c.run(["test", "-f", rules])
        assert eventually(lambda: probe() == "https://plugin.invalid/probe")
    finally:
        c.run(["rm", "-rf", f"{DIST}/hw_probe_plugin.py", f"{DIST}/hw_probe_plugin-0.1.dist-info"])
    # a pending change, previewed: nothing on disk may change (content, mode, owner, mtime)
    hw(hub, "config", "set", "limits.cpu", "1")
    tree = ["bash", "-c", "find /etc/hardway /var/lib/hardway /etc/systemd/system "
                          "! -name 'jupyterhub.sqlite*' -printf '%p %m %u %T@ %s\\n' | sort; "
                          "find /etc/hardway /var/lib/hardway -type f "
                          "! -name 'jupyterhub.sqlite*' -print0 | sort -z | xargs -0 sha256sum"]
    was = c.run(tree).stdout
    out = hw(hub, "config", "reload", "--dry-run").stdout
    assert "would change /var/lib/hardway/hub/hub.json" in out, out
    assert f"would remove {rules}" in out, out
    assert c.run(tree).stdout == was
    out = hw(hub, "config", "reload").stdout
    assert f"removing {rules} (hardway no longer renders it)" in out, out
    assert c.run(["test", "-e", rules], check=False).returncode == 1
    assert eventually(lambda: probe() != "https://plugin.invalid/probe")
    assert answers()
