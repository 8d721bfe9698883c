"""Issue 12 on a booted host: the Python environments under an offline site and a
changing system Python.

One container, in order:
1. an install with `--wheelhouse` and no package index reachable: every HTTP(S) client
   (pip, uv, urllib) is pointed at a dead proxy (127.0.0.1:9), so any download would
   fail. Debian packages are the site's own business (its own mirror): nftables is
   installed first, online, as such a site would have it;
2. `config reload` that changes the users' packages, again with no index: the new users'
   environment is built beside the running one from the remembered wheelhouse; alice's
   running server keeps running from the old one (same PID, its kernel answers) and
   picks up the new one at its next start;
3. a Python *patch* update, simulated (each environment's pyvenv.cfg says it was made by
   an older 3.x.0; hardway before this change rebuilt on any difference): bootstrap again
   changes nothing;
4. a Python *minor* change, simulated (the environments' stamps and pyvenv.cfg say they
   were built by Python 3.10; the container has one Python, so the new build uses the
   same interpreter): bootstrap builds new hub and user environments beside the old ones
   and switches; alice's server answers throughout, the hub API is down only while the
   hub restarts (the gap is measured and bounded).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time

import pytest
import requests
from conftest import BOOTSTRAP, Installed, record
from harness import Container
from hubclient import HubUser, RequestLoop, wait_for_hub
from wheelhouse import host_wheelhouse

WHEELHOUSE = "/root/wheelhouse"
ENVS = "/opt/hardway/envs"
#: no index, no download: any HTTP(S) client that tried would hit a closed port
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
           "UV_INDEX_URL": "http://127.0.0.1:9/simple",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
@pytest.fixture(scope="module")
def site():
    c = Container.create("hw-envs")
    try:
        c.boot()
        python = c.run(["python3", "-c", "import platform; print(platform.python_version())"]
                       ).stdout.strip()
        wheels = host_wheelhouse(python)
        shutil.copytree(wheels, c.path(WHEELHOUSE))
        c.run(["apt-get", "install", "-y", "-q", "nftables"],
              env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        inst = Installed(c, "offline-" + secrets.token_hex(6))
        yield inst
    finally:
        c.destroy()


def envs(c: Container) -> dict[str, float]:
    """Each built environment's directory -> its mtime."""
    return {p.name: p.stat().st_mtime for p in sorted(c.path(ENVS).iterdir())}


def target(c: Container, name: str) -> str:
    return os.readlink(c.path(f"/opt/hardway/{name}"))


def offline(c: Container, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    r = c.run(list(cmd), env=OFFLINE, check=False, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-3000:]}"
    return r


def server_pid(c: Container, unix_user: str) -> str:
    """The main PID of a user's server unit (the spawner names it UNIXNAME-singleuser)."""
    pid = c.run(["systemctl", "show", "-P", "MainPID", f"{unix_user}-singleuser"]).stdout
    assert pid.strip() not in ("", "0"), f"{unix_user}'s server is not running"
    return pid.strip()


def test_1_an_install_from_a_wheelhouse_needs_no_index(site: Installed):
    c = site.c
    t0 = time.monotonic()
    r = offline(c, "python3", BOOTSTRAP, "--admin", f"alice:{site.admin_password}",
                "--wheelhouse", WHEELHOUSE)
    record("install-offline", {"figure": time.monotonic() - t0, "unit": "s",
                               "how": "bootstrap.py --wheelhouse, every client pointed at a "
                                      "dead proxy, fresh container"})
    assert "hardway: install finished" in r.stdout, r.stdout[-3000:]
    assert target(c, "hub").startswith("envs/hub-") and target(c, "user").startswith(
        "envs/user-")
    state = json.loads(c.path("/var/lib/hardway/install-state.json").read_text())
    assert state["wheelhouse"] == WHEELHOUSE
    alice = HubUser(site.base, "alice", site.admin_password).sign_in()
    alice.start_server()
    assert alice.execute("1+1") == "2"


def test_2_reload_builds_the_users_env_beside_from_the_remembered_wheelhouse(site):
    c = site.c
    alice = HubUser(site.base, "alice", site.admin_password).sign_in()
    unix = alice.unix_user()
    pid = server_pid(c, unix)
    before = target(c, "user")
    c.run(["hardway", "config", "set", "user_environment.packages", "toml"])
    r = offline(c, "hardway", "config", "reload")
    after = target(c, "user")
    assert after != before and after.startswith("envs/user-"), r.stdout
    assert re.search(rf"built {ENVS}/user-\w+", r.stdout), r.stdout
    assert c.path(f"/opt/hardway/{before}/bin/python").exists()  # kept: alice runs from it
    # her server was not touched, and its kernel still works from the old environment
    assert server_pid(c, unix) == pid
    prefix = alice.execute("import sys; print(sys.prefix)").strip()
    assert prefix == f"/opt/hardway/{before}"
    # her next start uses the new one, with the new package
    alice.api("DELETE", f"/hub/api/users/{alice.name}/server")
    deadline = time.monotonic() + 60
    while alice.api("GET", f"/hub/api/users/{alice.name}").json().get("servers") and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    alice.start_server()
    assert alice.execute("import sys, toml; print(sys.prefix)").strip() == \
        f"/opt/hardway/{after}"


def test_3_a_python_patch_update_keeps_every_environment(site):
    c = site.c
    for name in ("hub", "user"):
        cfg = c.path(f"/opt/hardway/{name}/pyvenv.cfg")
        cfg.write_text(re.sub(r"^(version(?:_info)?\s*=\s*\d+\.\d+)\.\d+", r"\1.0",
                              cfg.read_text(), flags=re.M))
    before = envs(c)
    links = (target(c, "hub"), target(c, "user"))
    # no --wheelhouse: bootstrap uses the remembered one (and the index is unreachable)
    r = offline(c, "python3", BOOTSTRAP, "--admin", "alice")
    assert "packages only from /root/wheelhouse (remembered" in r.stdout, r.stdout[-3000:]
    assert "nothing to change" in r.stdout, r.stdout[-3000:]
    assert envs(c) == before
    assert (target(c, "hub"), target(c, "user")) == links


def test_4_a_python_minor_change_builds_beside_and_the_hub_keeps_answering(site):
    c = site.c
    alice = HubUser(site.base, "alice", site.admin_password).sign_in()
    unix = alice.unix_user()
    pid = server_pid(c, unix)
    old = {name: target(c, name) for name in ("hub", "user")}
    for name, stamp in (("hub", ".hardway-source.json"), ("user", ".hardway-stamp.json")):
        path = c.path(f"/opt/hardway/{name}/{stamp}")
        data = json.loads(path.read_text())
        data["python"] = "3.10"
        path.write_text(json.dumps(data))
        cfg = c.path(f"/opt/hardway/{name}/pyvenv.cfg")
        cfg.write_text(re.sub(r"^(version(?:_info)?\s*=\s*)\d+\.\d+\.\d+", r"\g<1>3.10.12",
                              cfg.read_text(), flags=re.M))
    hub_down: list[float] = []
    stop = threading.Event()

    def poll_hub() -> None:
        while not stop.is_set():
            t = time.monotonic()
            try:
                ok = requests.get(site.base + "/hub/api/", timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            if not ok:
                hub_down.append(t)
            time.sleep(0.2)

    poller = threading.Thread(target=poll_hub, daemon=True)
    poller.start()
    t0 = time.monotonic()
    try:
        with RequestLoop(alice, f"/user/{alice.name}/api/status", interval=0.2) as loop:
            r = offline(c, "python3", BOOTSTRAP, "--admin", "alice")
    finally:
        stop.set()
        poller.join()
    took = time.monotonic() - t0
    gap = (hub_down[-1] - hub_down[0] + 0.2) if hub_down else 0.0
    record("python-minor-change", {
        "figure": took, "unit": "s", "hub_api_down_s": round(gap, 1),
        "server_requests": len(loop.statuses), "server_failures": len(loop.failed),
        "how": "bootstrap.py after the environments' stamps were set to Python 3.10; hub "
               "API polled every 0.2 s, alice's server every 0.2 s"})
    assert "Python changed from 3.10.12 to" in r.stdout, r.stdout[-3000:]
    new = {name: target(c, name) for name in ("hub", "user")}
    for name in ("hub", "user"):
        assert new[name] != old[name] and new[name].startswith(f"envs/{name}-"), new
        assert c.path(f"/opt/hardway/{old[name]}").is_dir()  # the previous is kept
    # the hub was down only while it restarted into the new environment, not during the
    # builds (which take most of the time)
    assert gap < 15, f"hub API down for {gap:.1f} s of {took:.1f} s"
    assert took > gap * 2
    assert loop.statuses and loop.failed == [], loop.failed
    assert server_pid(c, unix) == pid
    wait_for_hub(site.base, 30)
    hub_pid = c.run(["systemctl", "show", "-P", "MainPID", "jupyterhub"]).stdout.strip()
    exe = c.run(["cat", f"/proc/{hub_pid}/cmdline"]).stdout.replace("\0", " ")
    assert new["hub"] in exe, exe
