"""Issue 13 groundwork on a booted host: a Docker engine inside, and the users' image
built there with no registry.

The container is booted with ``docker=True`` (harness.py): its own network namespace
with loopback only, so dockerd's docker0 bridge, NAT and firewall rules exist only inside
it, and no packet from it (a pull, a DNS lookup, a probe of the metadata address) can
reach another machine or the host's ports. Everything it needs was put in its root before
boot: Docker and nftables from Debian (the cached root variant) and hardway's wheels
(``bootstrap.py --wheelhouse``). The metadata address 169.254.169.254 is this
container's own: added to its loopback, where a small server answers, so the test shows
the address answers on the booted host and is refused from a user's container once the
confinement rule is loaded. Nothing is ever sent to the real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator

import netns
import pytest
from conftest import Installed, record
from hardway_plugins.spawner.docker_image import forbidden
from harness import Container
from wheelhouse import host_wheelhouse

WHEELHOUSE = "/root/wheelhouse"
BUILD = ["/opt/hardway/hub/bin/python", "-m", "hardway_plugins.spawner.docker_image",
         "--work", "/var/tmp"]
METADATA = "169.254.169.254"
#: planted on the booted host before the image is built: none may reach the image
PLANTED = {"/root/.ssh/id_ed25519": "not a real key\n",
           "/etc/ssh/ssh_host_ed25519_key": "not a real host key\n",
           "/home/carol/notes.txt": "another user's file\n"}
#: a GET of the metadata address, printing the status or the error's name
PROBE = f"""
import urllib.request
try:
    print(urllib.request.urlopen("http://{METADATA}/", timeout=5).status)
except Exception as e:
    print(type(e).__name__, getattr(e, "reason", e))
"""
#: every shared object under the environment loaded with its dependencies; prints those
#: that link to a library the image lacks
LINKS = """
import ctypes, os, pathlib, sys
for so in sorted(pathlib.Path(sys.prefix).resolve().rglob("*.so*")):
    try:
        ctypes.CDLL(str(so), os.RTLD_LAZY)
    except OSError as e:
        if "cannot open shared object file" in str(e):
            print(so, e)
"""
#: the rule the docker spawner will load (prototype): a container's packets to link-local
#: addresses are refused at once, whether the address is this host's own (input) or
#: routed onwards (forward, the cloud case)
CONFINE = """table inet hardway-docker-it
delete table inet hardway-docker-it
table inet hardway-docker-it {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname "docker0" ip daddr 169.254.0.0/16 meta l4proto tcp reject with tcp reset
\t\tiifname "docker0" ip daddr 169.254.0.0/16 reject with icmpx admin-prohibited
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "docker0" ip daddr 169.254.0.0/16 meta l4proto tcp reject with tcp reset
\t\tiifname "docker0" ip daddr 169.254.0.0/16 reject with icmpx admin-prohibited
\t}
}
"""


@pytest.fixture(scope="module")
def site():
    t0 = time.monotonic()
    c = Container.create("hw-docker", docker=True)
    try:
        c.boot()
        python = c.run(["python3", "-c", "import platform; print(platform.python_version())"]
                       ).stdout.strip()
        shutil.copytree(host_wheelhouse(python), c.path(WHEELHOUSE))
        inst = Installed(c, "docker-" + secrets.token_hex(6))
        inst.bootstrap_args += ["--wheelhouse", WHEELHOUSE]
        _, inst.first_seconds = inst.bootstrap()
        for path, text in PLANTED.items():
            c.path(path).parent.mkdir(parents=True, exist_ok=True)
            c.path(path).write_text(text)
            c.path(path).chmod(0o600)
        r = c.run(BUILD, timeout=900)
        inst.built = json.loads(r.stdout)  # type: ignore[attr-defined]
        inst.ready_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
        yield inst
    finally:
        c.destroy()


def docker(c: Container, *args: str, check: bool = True, timeout: float = 300
           ) -> subprocess.CompletedProcess[str]:
    return c.run(["docker", *args], check=check, timeout=timeout)


def test_1_the_engine_runs_inside_its_own_network_namespace(site: Installed):
    c = site.c
    info = json.loads(docker(c, "info", "--format", "{{json .}}").stdout)
    assert info["ServerVersion"], info
    assert info["CgroupVersion"] == "1" and info["Driver"] == "overlay2", info
    assert c.run(["systemctl", "is-active", "hardway-it-cgroup-rw", "containerd", "docker"]
                 ).stdout.split() == ["active"] * 3
    # not the host's namespace: docker0 and dockerd's rules are the container's own
    assert os.readlink(f"/proc/{c.init_pid}/ns/net") != os.readlink("/proc/self/ns/net")
    links = c.run(["ip", "-br", "link"]).stdout.split("\n")
    assert sorted(line.split()[0] for line in links if line.strip()) == ["docker0", "lo"]
    routes = c.run(["ip", "route"]).stdout
    assert "default" not in routes, routes  # no way out: nothing reaches another machine


def test_2_the_users_image_is_built_locally_with_no_registry(site: Installed):
    c, built = site.c, site.built  # type: ignore[attr-defined]
    env = os.readlink(c.path("/opt/hardway/user"))
    assert built["image"] == f"hardway-user:{os.path.basename(env)}", built
    images = docker(c, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(images) == sorted([built["base"], built["image"]]), images  # nothing pulled
    history = docker(c, "history", "--format", "{{.Comment}}", built["base"]).stdout
    assert "Imported from -" in history  # the base is an import, not a pulled image
    # a second build finds both images and builds nothing
    t0 = time.monotonic()
    again = json.loads(c.run(BUILD).stdout)
    assert (again["base"], again["image"], again["seconds"]) == (
        built["base"], built["image"], {}), again
    record("docker-image-build", {
        "seconds": {k: round(v, 1) for k, v in built["seconds"].items()},
        "MB": {k: round(v / 1e6, 1) for k, v in built["sizes"].items()},
        "members": {"base": built["base_members"], "env": built["env_members"]},
        "rebuild_seconds": round(time.monotonic() - t0, 1),
        "install_seconds": round(site.first_seconds, 1),
        "fixture_seconds": round(site.ready_seconds, 1),  # type: ignore[attr-defined]
        "how": "booted Debian 12 on a private network: bootstrap --wheelhouse, then "
               "python -m hardway_plugins.spawner.docker_image (docker import of the "
               "host's dpkg files + docker build adding the users' environment)"})


def test_3_a_server_python_runs_as_a_non_root_user_from_the_pinned_environment(site):
    c, image = site.c, site.built["image"]
    script = ("import os, sys, jupyterhub, jupyterlab; "
              "print(os.getuid(), os.getgid(), sys.prefix, jupyterhub.__version__, "
              "jupyterlab.__version__)")
    out = docker(c, "run", "--rm", "-m", "256m", image, "python3", "-c", script).stdout.split()
    host = c.run(["/opt/hardway/user/bin/python", "-c", script]).stdout.split()
    assert out[:2] == ["1000", "100"], out
    assert out[2:] == host[2:], (out, host)  # the same environment, the same versions
    cmd = docker(c, "image", "inspect", "--format", "{{json .Config.Cmd}} {{.Config.User}}",
                 image).stdout.strip()
    assert cmd == '["jupyterhub-singleuser"] 1000:100', cmd
    version = docker(c, "run", "--rm", image, "jupyterhub-singleuser", "--version")
    assert version.stdout.strip(), version
    # every native library of the environment finds what it links to inside the image
    missing = docker(c, "run", "--rm", image, "python3", "-c", LINKS).stdout.strip()
    assert missing == "", missing


def test_4_allocating_past_the_memory_limit_kills_the_process(site: Installed):
    c, image = site.c, site.built["image"]
    name = "hw-oom"
    r = docker(c, "run", "--name", name, "-m", "256m", "--memory-swap", "256m", image,
               "python3", "-c", "x = bytearray(400 * 2**20); print('survived')", check=False)
    try:
        state = json.loads(docker(c, "inspect", "--format", "{{json .State}}", name).stdout)
    finally:
        docker(c, "rm", "-f", name, check=False)
    assert r.returncode == 137 and "survived" not in r.stdout, (r.returncode, r.stdout)
    assert state["OOMKilled"] is True, state
    # under the limit the same allocation pattern works
    ok = docker(c, "run", "--rm", "-m", "256m", image, "python3", "-c",
                "x = bytearray(64 * 2**20); print('fine')")
    assert ok.stdout.strip() == "fine"


def test_5_nothing_secret_from_the_host_is_in_the_image(site: Installed):
    c, image = site.c, site.built["image"]
    cid = docker(c, "create", image).stdout.strip()
    names, passwd = [], ""
    try:
        export = subprocess.Popen(["nsenter", "-t", str(c.init_pid), "-a", "docker", "export",
                                   cid], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                names.append(member.name)
                if member.name == "etc/passwd":
                    passwd = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
        assert export.wait(60) == 0
    finally:
        docker(c, "rm", cid, check=False)
    assert len(names) > 1000
    assert forbidden(names) == [], forbidden(names)
    # the paths the brief names, spelled out, and what the fixture planted
    for path in ("etc/shadow", "etc/gshadow", "etc/hardway", "var/lib/hardway", "root/.ssh",
                 "etc/ssh", "home/carol", "etc/machine-id", "var/lib/dpkg"):
        assert not any(n == path or n.startswith(path + "/") for n in names), path
    # the image's accounts are its own, none of the host's (jupyter-*, hardway-proxy...)
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["root", "nobody", "jovyan"]


@contextlib.contextmanager
def fake_metadata(c: Container) -> Iterator[None]:
    """The booted host's own 169.254.169.254 (its private namespace: nothing leaves it),
    on its loopback with a web server answering 200, for the ``with`` block."""
    c.run(["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"])
    c.run(["systemd-run", "--unit=hw-fake-metadata", "python3", "-m", "http.server",
           "--bind", METADATA, "80"])
    try:
        for _ in range(50):
            if c.run(["python3", "-c", PROBE]).stdout.strip() == "200":
                break
            time.sleep(0.1)
        yield
    finally:
        c.run(["systemctl", "stop", "hw-fake-metadata"], check=False)
        c.run(["ip", "addr", "del", f"{METADATA}/32", "dev", "lo"], check=False)


def test_6_the_metadata_address_answers_on_the_host_and_not_from_a_container(site):
    c, image = site.c, site.built["image"]
    with fake_metadata(c):
        try:
            assert c.run(["python3", "-c", PROBE]).stdout.strip() == "200"
            # without confinement a container reaches it (what the docker spawner must
            # prevent)
            open_ = docker(c, "run", "--rm", image, "python3", "-c", PROBE).stdout.strip()
            assert open_ == "200", open_
            c.run(["nft", "-f", "-"], input=CONFINE)
            blocked = docker(c, "run", "--rm", image, "python3", "-c", PROBE).stdout.strip()
            assert blocked.startswith("URLError") and "refused" in blocked, blocked
            assert c.run(["python3", "-c", PROBE]).stdout.strip() == "200"  # the host can
        finally:
            c.run(["nft", "delete", "table", "inet", "hardway-docker-it"], check=False)


def test_7_after_a_reboot_the_engine_runs_containers_again(site: Installed):
    """The cgroup controllers are remounted by a unit at every boot, before dockerd."""
    c, image = site.c, site.built["image"]
    c.reboot()
    for _ in range(60):
        if c.run(["systemctl", "is-active", "docker"], check=False).stdout.strip() == "active":
            break
        time.sleep(0.5)
    out = docker(c, "run", "--rm", "-m", "256m", image, "python3", "-c",
                 "import os; print(os.getuid())").stdout.strip()
    assert out == "1000", out


# --- the docker spawner (issue 13): a hub switched to it and back, on the same host

HUB = "http://127.0.0.1"
#: a user's server started (if not running) and ``code`` run in a kernel there
EXECUTE = """
from hubclient import HubUser
u = HubUser("http://127.0.0.1", name, password).sign_in()
u.start_server()
print(json.dumps(u.execute(code, timeout=120)))
"""
STOP = """
import time
from hubclient import HubUser
u = HubUser("http://127.0.0.1", name, password).sign_in()
u.api("DELETE", f"/hub/api/users/{name}/server")
deadline = time.monotonic() + 120
while u.api("GET", f"/hub/api/users/{name}").json().get("servers"):
    assert time.monotonic() < deadline, "the server did not stop"
    time.sleep(0.5)
print(json.dumps("stopped"))
"""
LOOP = """
import time
from hubclient import HubUser, RequestLoop
u = HubUser("http://127.0.0.1", name, password).sign_in()
with RequestLoop(u, f"/user/{name}/api/status", interval=0.1) as loop:
    time.sleep(seconds)
print(json.dumps({"statuses": loop.statuses, "failed": loop.failed}))
"""


def hwc(c: Container, *args: str, check: bool = True, timeout: float = 900):
    r = c.run(["hardway", *args], check=False, timeout=timeout)
    if check:
        assert r.returncode == 0, f"hardway {' '.join(args)}:\n{r.stdout[-4000:]}\n{r.stderr}"
    return r


def execute(site: Installed, code: str, name: str = "alice", password: str | None = None):
    return netns.run(site.c, EXECUTE, name=name, password=password or site.admin_password,
                     code=code)


def container_of(c: Container, name: str) -> dict:
    return json.loads(docker(c, "inspect", f"jupyter-{name}").stdout)[0]


WAIT = """
from hubclient import wait_for_hub
print(json.dumps(wait_for_hub("http://127.0.0.1", 120)))
"""


def test_8_a_file_written_under_the_systemd_spawner(site: Installed):
    netns.run(site.c, WAIT)  # the hub is starting again after test 7's reboot
    out = execute(site, "open('from-systemd.txt', 'w').write('written under systemd')\n"
                        "import os; os.getuid()")
    assert int(out) >= 1000
    # her server keeps running: the switch below stops it
    assert site.c.run(["systemctl", "is-active", "jupyter-alice-singleuser"]
                      ).stdout.strip() == "active"


def test_9_switched_to_docker_her_server_runs_in_a_container(site: Installed):
    c = site.c
    hwc(c, "config", "set", "spawner.type", "docker")
    hwc(c, "config", "set", "limits.memory", "256M")
    r = hwc(c, "config", "reload", "--timeout", "300")
    assert re.search(r"restarted: .*jupyterhub\.service", r.stdout), r.stdout[-3000:]
    assert "stopped 1 server(s) running as systemd units" in r.stdout, r.stdout[-3000:]
    assert c.run(["systemctl", "is-active", "jupyter-alice-singleuser"], check=False
                 ).stdout.strip() != "active"
    assert c.run(["systemctl", "is-active", "hardway-hub-bridge.socket"]).stdout.strip() \
        == "active"
    out = execute(site, "import os; print(os.getuid(), os.getgid(), "
                        "open('from-systemd.txt').read())")
    account = c.run(["id", "-u", "jupyter-alice"]).stdout.strip()
    group = c.run(["id", "-g", "jupyter-alice"]).stdout.strip()
    assert out.strip().split(" ", 2) == [account, group, "written under systemd"], out
    info = container_of(c, "alice")
    assert info["State"]["Running"] is True
    assert info["Config"]["User"] == f"{account}:{group}"
    # the image built from the users' environment in use (the tag the hub starts from)
    env = os.path.basename(os.readlink(c.path("/opt/hardway/user")))
    built_id = docker(c, "image", "inspect", "--format", "{{.Id}}", f"hardway-user:{env}"
                      ).stdout.strip()
    assert info["Config"]["Image"] == "hardway-user:current" and info["Image"] == built_id
    assert info["HostConfig"]["Memory"] == 256 * 2**20
    assert not info["HostConfig"]["PortBindings"], info["HostConfig"]["PortBindings"]
    assert not info["HostConfig"]["Privileged"]
    assert "ALL" in (info["HostConfig"]["CapDrop"] or [])
    mounts = {m["Source"]: (m["Destination"], m["RW"]) for m in info["Mounts"]}
    accounts = "/run/hardway/container-accounts/jupyter-alice"
    assert mounts == {"/home/jupyter-alice": ("/home/jupyter-alice", True),
                      f"{accounts}/passwd": ("/etc/passwd", False),
                      f"{accounts}/group": ("/etc/group", False)}, mounts
    # she is herself in her container (no other account of the host is listed there)
    assert execute(site, "import getpass, pwd, os; (getpass.getuser(), "
                         "pwd.getpwuid(os.getuid()).pw_name, len(list(pwd.getpwall())))"
                   ) == "('jupyter-alice', 'jupyter-alice', 3)"
    assert list(info["NetworkSettings"]["Networks"]) == ["hardway-users"]
    assert execute(site, "1+1") == "2"
    execute(site, "open('from-docker.txt', 'w').write('written under docker')")
    status = hwc(c, "status").stdout
    assert "docker.service: active, engine " in status, status
    assert re.search(r"users' image hardway-user:current: [0-9a-f]{12}, built .*, from "
                     r"/opt/hardway/envs/user-", status), status
    assert "users' containers running: 1 (jupyter-alice)" in status, status
    found = {f["id"]: f for f in json.loads(hwc(c, "doctor", "--json", check=False).stdout)}
    for check in ("engine", "image", "network", "hub-bridge", "containers"):
        assert found[f"spawner.docker.{check}"]["status"] == "ok", found


def test_9b_an_image_that_does_not_exist_is_refused_and_nothing_changes(site: Installed):
    c = site.c
    hub_json = c.path("/var/lib/hardway/hub/hub.json").read_bytes()
    pid = c.run(["systemctl", "show", "-P", "MainPID", "jupyterhub"]).stdout
    hwc(c, "config", "set", "spawner.docker.image", "example.org/no/such-image:1.0")
    r = hwc(c, "config", "reload", check=False)
    text = r.stdout + r.stderr
    assert r.returncode == 2, text[-3000:]
    line = [ln for ln in r.stderr.splitlines() if "spawner.docker.image" in ln]
    assert len(line) == 1 and "'example.org/no/such-image:1.0'" in line[0], text[-3000:]
    assert "cannot be pulled" in line[0] and "Traceback" not in text
    assert c.path("/var/lib/hardway/hub/hub.json").read_bytes() == hub_json
    assert c.run(["systemctl", "show", "-P", "MainPID", "jupyterhub"]).stdout == pid
    hwc(c, "config", "unset", "spawner.docker.image")  # back to the built image
    assert execute(site, "3*3") == "9"  # still served, from the built image
    assert container_of(c, "alice")["Config"]["Image"] == "hardway-user:current"


def test_10_her_container_reaches_the_hub_api_and_nothing_else(site: Installed):
    c = site.c
    # bob, another user with a running container
    admin = ("from hubclient import HubUser\n"
             "HubUser('http://127.0.0.1', 'alice', password).sign_in().allow('bob')\n"
             "print(json.dumps('ok'))\n")
    netns.run(c, admin, password=site.admin_password)
    execute(site, "1", name="bob", password="bob-password-long-enough")
    bob_ip = container_of(c, "bob")["NetworkSettings"]["Networks"]["hardway-users"][
        "IPAddress"]
    gateway = "172.31.250.1"
    with fake_metadata(c):
        probe = ("import socket\n"
                 "def reach(host, port):\n"
                 "    try:\n"
                 "        socket.create_connection((host, port), timeout=3).close()\n"
                 "        return 'open'\n"
                 "    except OSError as e:\n"
                 "        return type(e).__name__\n"
                 "import json, os\n"
                 f"print(json.dumps([{{k: reach(*v) for k, v in {{'hub': ('{gateway}', 8081), "
                 f"'metadata': ('{METADATA}', 80), 'traefik_api': ('{gateway}', 8099), "
                 f"'proxy': ('{gateway}', 80), 'bob': ('{bob_ip}', 8888)}}.items()}}, "
                 "os.path.exists('/var/run/docker.sock')]))")
        out = execute(site, probe)
    record("docker-confinement", {"figure": out, "unit": "reachability from alice's kernel"})
    reach, sock = json.loads(out)
    assert reach["hub"] == "open", out
    for what in ("metadata", "traefik_api", "proxy", "bob"):
        assert reach[what] != "open", out
    assert sock is False, out


TRY = """
from hubclient import HubUser
u = HubUser("http://127.0.0.1", name, password).sign_in()
try:
    # a kernel the OOM killer took never replies: 20 s tells that apart from a reply
    print(json.dumps({"result": u.execute(code, timeout=20)}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"[:300]}))
"""


def test_10b_allocating_past_her_memory_limit_kills_her_kernel_not_the_hub(site: Installed):
    c = site.c
    before = container_of(c, "alice")["Id"]
    got = netns.run(c, TRY, name="alice", password=site.admin_password,
                    code="x = bytearray(600 * 2**20); x[::4096] = b'1' * len(x[::4096]); "
                         "'survived'")
    record("docker-memory-limit", {"figure": got, "unit": "kernel's answer",
                                   "how": "600 MB touched under limits.memory 256M"})
    assert got.get("result") != "'survived'", got
    info = container_of(c, "alice")
    assert info["Id"] == before and info["State"]["Running"] is True
    assert execute(site, "1+1") == "2"  # a new kernel in the same server


def test_11_a_hub_restart_keeps_her_container_running_and_reachable(site: Installed):
    c = site.c
    before = container_of(c, "alice")["Id"]
    loop = netns.client(c, LOOP, name="alice", password=site.admin_password, seconds=12)
    time.sleep(3)
    c.run(["systemctl", "restart", "jupyterhub"])
    got = netns.result(loop)
    assert container_of(c, "alice")["Id"] == before
    assert len(got["statuses"]) > 50 and got["failed"] == [], got["failed"][:20]
    assert execute(site, "2+2") == "4"


CLASS = """
from hubclient import HubUser
from scenarios import class_arrives
admin = HubUser("http://127.0.0.1", "alice", password).sign_in()
r = class_arrives("http://127.0.0.1", n, prefix=prefix, admin=admin)
for i in range(1, n + 1):
    admin.api("DELETE", f"/hub/api/users/{prefix}{i:02d}/server")
print(json.dumps(r.figures() | {"failures": r.failures}))
"""


def test_11b_a_class_of_20_arrives_in_containers(site: Installed):
    c = site.c
    got = netns.run(c, CLASS, timeout=900, password=site.admin_password, n=20, prefix="dk")
    record("class-of-20-docker", got)
    assert got["failed"] == 0, got["failures"]
    # the servers were containers (their names), and they go when the servers stop
    deadline = time.monotonic() + 120
    while docker(c, "ps", "-q", "--filter", "name=^jupyter-dk").stdout.strip():
        assert time.monotonic() < deadline, "the class's containers were not removed"
        time.sleep(1)


def test_11c_the_culler_stops_an_idle_container(site: Installed):
    c = site.c
    assert docker(c, "ps", "-q", "--filter", "name=^jupyter-bob$").stdout.strip()
    hwc(c, "config", "set", "services.cull.timeout", "20")
    hwc(c, "config", "set", "services.cull.every", "5")
    hwc(c, "config", "reload", "--timeout", "120")
    t0 = time.monotonic()
    try:
        while docker(c, "ps", "-q", "--filter", "name=^jupyter-bob$").stdout.strip():
            assert time.monotonic() - t0 < 180, "bob's idle container was not culled"
            time.sleep(2)
    finally:
        hwc(c, "config", "unset", "services.cull.timeout", "services.cull.every")
        hwc(c, "config", "reload", "--timeout", "120")
    record("docker-cull", {"figure": round(time.monotonic() - t0, 1), "unit": "s",
                           "how": "reload with timeout 20 s, every 5 s, until bob's idle "
                                  "container is gone"})


NOTICED = """
import time
from hubclient import HubUser
u = HubUser("http://127.0.0.1", name, password).sign_in()
t0 = time.monotonic()
while u.api("GET", f"/hub/api/users/{name}").json().get("servers"):
    assert time.monotonic() - t0 < 60, "the hub did not notice the server stopped"
    time.sleep(0.5)
seconds = time.monotonic() - t0
page = u.s.get(f"{u.base}/hub/user/{name}/", timeout=30)
print(json.dumps({"seconds": seconds, "status": page.status_code, "html": page.text}))
"""
FAILED_START = """
import time
from hubclient import HubUser
u = HubUser("http://127.0.0.1", name, password).sign_in()
t0 = time.monotonic()
r = u.api("POST", f"/hub/api/users/{name}/server")
# 503 and the reason when it failed within the request, else 202 and the reason follows
assert r.status_code in (201, 202, 503), (r.status_code, r.text)
posted = {"status": r.status_code, "message": r.json().get("message") if r.text else ""}
events = []
with u.api("GET", f"/hub/api/users/{name}/server/progress", stream=True, timeout=300) as s:
    for line in s.iter_lines():
        if line.startswith(b"data:"):
            events.append(json.loads(line[5:]))
            if events[-1].get("failed") or events[-1].get("ready"):
                break
seconds = time.monotonic() - t0
page = u.s.get(f"{u.base}/hub/spawn-pending/{name}", timeout=30)
print(json.dumps({"seconds": seconds, "last": events[-1], "status": page.status_code,
                  "html": page.text, "posted": posted}))
"""


def stopped_note(html: str) -> str:
    found = re.findall(r'<p id="hardway-stopped"[^>]*>(.*?)</p>', html, re.S)
    return " ".join(found[0].split()) if found else ""


def test_11d_a_crashed_container_is_reported_to_her_with_why(site: Installed):
    c = site.c
    assert execute(site, "1") == "1"  # the culler of test 11c may have stopped hers
    docker(c, "kill", "--signal", "KILL", "jupyter-alice")  # a crash, from outside
    got = netns.run(c, NOTICED, name="alice", password=site.admin_password)
    note = stopped_note(got["html"])
    record("docker-crash-noticed", {"figure": round(got["seconds"], 1), "unit": "s",
                                    "how": "docker kill of her container until the hub "
                                           "lists no server (poll_interval 10 s)",
                                    "note": note})
    assert got["seconds"] < 30, got["seconds"]
    journal = c.run(["journalctl", "-u", "jupyterhub", "-n", "60", "--no-pager"]).stdout
    assert note.startswith("Your server stopped by itself: it was killed (signal 9)"), \
        (got["status"], got["html"][-1500:], journal[-5000:])
    assert "Launch" in got["html"]  # JupyterHub's own page, with its button
    # the container of the crashed server is removed once the hub noticed
    assert not docker(c, "ps", "-aq", "--filter", "name=^jupyter-alice$").stdout.strip()


def test_11e_a_server_that_fails_to_start_says_why_at_once(site: Installed):
    c = site.c
    config = c.path("/home/jupyter-alice/.jupyter/jupyter_server_config.py")
    config.parent.mkdir(exist_ok=True)
    config.write_text("raise SystemExit('hardway-test: a broken server config')\n")
    owner = c.run(["stat", "-c", "%u:%g", "/home/jupyter-alice"]).stdout.strip()
    c.run(["chown", "-R", owner, "/home/jupyter-alice/.jupyter"])
    try:
        got = netns.run(c, FAILED_START, name="alice", password=site.admin_password)
    finally:
        shutil.rmtree(config.parent)
    record("docker-failed-start", {"figure": round(got["seconds"], 1), "unit": "s",
                                   "how": "spawn until the progress stream says failed",
                                   "message": got["last"].get("message")})
    message = got["last"].get("message", "")
    assert got["last"].get("failed") is True, got["last"]
    assert message.startswith("Spawn failed: Your server stopped while it was starting: "
                              "it exited with status 1"), message
    assert "hardway-test: a broken server config" in message, message
    assert got["seconds"] < 30, got["seconds"]  # not the hub's 180 s HTTP timeout
    assert "hardway-test: a broken server config" in got["html"]  # the page says it too
    if got["posted"]["status"] == 503:  # the request that started it was answered with it
        assert got["posted"]["message"] == message.removeprefix("Spawn failed: ")
    assert "Traceback" not in message
    assert execute(site, "1+1") == "2"  # fixed: she starts again


def test_11f_a_changed_users_environment_gets_a_new_image_and_the_old_one_goes(site):
    """The change: a course added (nbgrader and nbgitpuller join the users' environment;
    test 11g runs the course)."""
    c = site.c
    old_env = os.path.basename(os.readlink(c.path("/opt/hardway/user")))
    before = container_of(c, "alice")
    t0 = time.monotonic()
    r = hwc(c, "course", "add", COURSE, "--title", "Containers 101", "--timeout", "600")
    record("course-add-docker", {"figure": round(time.monotonic() - t0, 1), "unit": "s",
                                 "how": "hardway course add under the docker spawner (users' "
                                        "environment and image rebuilt with nbgrader)"})
    new_env = os.path.basename(os.readlink(c.path("/opt/hardway/user")))
    assert new_env != old_env
    assert f"built the users' image hardway-user:{new_env}" in r.stdout, r.stdout[-3000:]
    new_id = docker(c, "image", "inspect", "--format", "{{.Id}}", f"hardway-user:{new_env}"
                    ).stdout.strip()
    assert docker(c, "image", "inspect", "--format", "{{.Id}}", "hardway-user:current"
                  ).stdout.strip() == new_id
    # her running server keeps its container and image; its image is not pruned under it
    after = container_of(c, "alice")
    assert after["Id"] == before["Id"] and after["Image"] == before["Image"]
    assert docker(c, "image", "inspect", f"hardway-user:{old_env}", check=False
                  ).returncode == 0
    # her next start gets the new image
    netns.run(c, STOP, name="alice", password=site.admin_password)
    assert execute(site, "import nbgrader; nbgrader.__name__") == "'nbgrader'"
    assert container_of(c, "alice")["Image"] == new_id
    # no longer used: the next reload prunes it
    r = hwc(c, "config", "reload", "--timeout", "300")
    assert f"removed the older users' image hardway-user:{old_env}" in r.stdout, \
        r.stdout[-3000:]
    tags = set(docker(c, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                      "--filter", "reference=hardway-user").stdout.split())
    assert tags == {"hardway-user:current", f"hardway-user:{new_env}"}, tags
    status = hwc(c, "status").stdout
    assert f"from /opt/hardway/envs/{new_env}" in status, status


COURSE = "dock-101"
#: the nbgrader cycle of one course, alice being its instructor (through the formgrader,
#: which runs on the host) and a student (in her container); returns each step's answer
COURSE_CYCLE = """
import time
from hubclient import HubUser
from nbgrader_cycle import feedback, solve, step_succeeded, write_source
u = HubUser("http://127.0.0.1", name, password).sign_in()
got = {}
for group in (f"formgrade-{cid}", f"nbgrader-{cid}"):
    r = u.api("POST", f"/hub/api/groups/{group}/users", json={"users": [name]})
    assert r.status_code == 200, (group, r.status_code, r.text[:300])
def fg(method, path, **kw):
    return u.api(method, f"/services/{cid}/formgrader/api/{path}", timeout=300, **kw)
deadline = time.monotonic() + 60
while fg("GET", "assignments").status_code != 200:
    assert time.monotonic() < deadline, "the formgrader does not answer"
    time.sleep(1)
write_source(u, cid)
for step in ("assign", "release"):
    r = fg("POST", f"assignment/ps1/{step}")
    got[step] = step_succeeded(r) or r.text[:1500]
u.start_server()
got["solve"] = json.loads(u.execute(solve(cid), timeout=300))
got["gids"] = json.loads(u.execute("import json, os; print(json.dumps(os.getgroups()))"))
r = fg("POST", "assignment/ps1/collect")
got["collect"] = step_succeeded(r) or r.text[:1500]
r = fg("POST", f"submission/ps1/{student}/autograde")
got["autograde"] = step_succeeded(r) or r.text[:1500]
got["score"] = fg("GET", f"submission/ps1/{student}").json()
for step in ("generate_feedback", "release_feedback"):
    r = fg("POST", f"assignment/ps1/{step}")
    got[step] = step_succeeded(r) or r.text[:1500]
got["feedback"] = json.loads(u.execute(feedback(cid), timeout=300))
print(json.dumps(got))
"""


def test_11g_a_course_under_the_docker_spawner_runs_the_nbgrader_cycle(site: Installed):
    """The exchange and the global nbgrader config are mounted into her container, her
    container holds the course's unix group: fetch and submit there, grade on the host."""
    c = site.c
    netns.run(c, STOP, name="alice", password=site.admin_password)  # joins it at start
    assert c.run(["systemctl", "is-active", f"hardway-course-{COURSE}"]).stdout.strip() \
        == "active"
    got = netns.run(c, COURSE_CYCLE, name="alice", password=site.admin_password, cid=COURSE,
                    student="jupyter-alice", timeout=1200)
    assert got["assign"] is True and got["release"] is True, got
    assert got["solve"]["fetch"]["rc"] == 0 and got["solve"]["submit"]["rc"] == 0, got["solve"]
    # by number: the container has no entry for the host's groups
    gid = int(c.run(["getent", "group", f"course-{COURSE}"]).stdout.split(":")[2])
    assert gid in got["gids"], got["gids"]
    # her submission crossed from her container to the course's formgrader on the host
    assert got["collect"] is True and got["autograde"] is True, got
    assert got["score"]["score"] == got["score"]["max_score"] == 2.0, got["score"]
    assert got["feedback"]["rc"] == 0 and len(got["feedback"]["files"]) == 1, got["feedback"]
    mounts = {m["Destination"]: m["RW"] for m in container_of(c, "alice")["Mounts"]}
    assert mounts["/var/lib/hardway/exchange"] is True, mounts
    # nbgrader names the student after her account, as under the systemd spawner
    assert mounts["/etc/jupyter/nbgrader_config.py"] is False, mounts


def test_12_switched_back_her_files_are_there_and_hers(site: Installed):
    c = site.c
    netns.run(c, STOP, name="alice", password=site.admin_password)
    hwc(c, "config", "set", "spawner.type", "systemd")
    hwc(c, "config", "reload", "--timeout", "300")
    out = execute(site, "open('from-docker.txt').read()")
    assert out.strip("'") == "written under docker"
    owner = c.run(["stat", "-c", "%U:%G", "/home/jupyter-alice/from-docker.txt"]).stdout
    assert owner.strip() == "jupyter-alice:jupyter-alice"
    assert c.run(["systemctl", "is-active", "hardway-hub-bridge.socket"],
                 check=False).stdout.strip() != "active"
