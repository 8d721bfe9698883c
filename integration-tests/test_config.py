"""Issue 4 on a booted host: `hardway config` changes, reloads that restart only what
changed, refusals that leave the hub serving, and the keys that reach a real hub."""

from __future__ import annotations

import base64
import time

import requests
from conftest import record
from hubclient import HubUser, RequestLoop
from test_install import unit_props

HUB = "jupyterhub.service"
PROXY = "jupyterhub-proxy.service"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def hw(hub, *args: str, check: bool = True):
    return hub.c.run(["hardway", *args], check=check, timeout=600)


def pids(hub) -> dict[str, str]:
    return {u: unit_props(hub.c, u, "MainPID")["MainPID"] for u in (HUB, PROXY)}


def user(hub, name: str) -> HubUser:
    HubUser(hub.base, "alice", hub.admin_password).sign_in().allow(name)
    return HubUser(hub.base, name, f"{name}-password-long").sign_in()


def test_verbs_on_the_host(hub):
    c = hub.c
    c.run(["bash", "-c", "printf '# site policy\\nlimits:\\n  cpu: 2.0\\n' > "
                         "/etc/hardway/config.d/50-site.yaml"])
    r = hw(hub, "config", "set", "limits.cpu", "1")
    assert "also set in /etc/hardway/config.d/50-site.yaml:3" in r.stderr
    out = hw(hub, "config", "show", "limits", "--origin").stdout
    assert "limits.cpu = 2.0    [/etc/hardway/config.d/50-site.yaml:3]" in out
    assert "limits.memory = auto    [default]" in out  # a quarter of the machine's memory
    r = hw(hub, "config", "set", "limits.cpu", "lots", check=False)
    assert r.returncode == 2 and "limits.cpu: expected a number" in r.stderr
    assert "Traceback" not in r.stderr
    c.run(["rm", "/etc/hardway/config.d/50-site.yaml"])
    hw(hub, "config", "unset", "limits.cpu")
    assert hw(hub, "config", "get", "users.admin").stdout.strip() == "alice"


def test_20_concurrent_add_item(hub):
    c = hub.c
    c.run(["bash", "-c", "for i in $(seq -w 1 20); do hardway config add-item users.allowed "
                         "user$i >/dev/null & done; wait"], timeout=300)
    got = hw(hub, "config", "get", "users.allowed").stdout.strip().split(",")
    assert sorted(got) == [f"user{i:02d}" for i in range(1, 21)]
    hw(hub, "config", "unset", "users.allowed")


def one_line(r, code: int, *needles: str) -> str:
    """The command exited ``code`` with exactly one line on stderr, holding every needle."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_clear_answers_for_bad_values_ipv6_and_a_full_disk(hub):
    c = hub.c
    config = "/etc/hardway/config.yaml"

    def config_bytes() -> bytes:  # read inside: a tmpfs mounted there is not seen outside
        return base64.b64decode(c.run(["base64", "-w0", config]).stdout)

    before = config_bytes()
    # a whole mapping cannot come from one file; each value can
    r = hw(hub, "config", "set", "auth.lti11.consumers", "file:/etc/hostname", check=False)
    one_line(r, 2, "auth.lti11.consumers", "'file:/etc/hostname'",
             "each value may be file:/abs/path instead")
    r = hw(hub, "config", "set", "hub.db_url", "file:/etc/hardway/no-such-file", check=False)
    one_line(r, 2, "hub.db_url", "/etc/hardway/no-such-file does not exist")
    r = hw(hub, "config", "set", "http.address", "not-an-ip", check=False)
    one_line(r, 2, "http.address", "'not-an-ip'", "IPv4 or IPv6 address")
    assert config_bytes() == before

    # IPv6: Traefik and the hub take "[::]:80"; with bindv6only=0 that is IPv4 too
    hw(hub, "config", "set", "http.address", "::")
    try:
        r = hw(hub, "config", "reload")
        assert "restarted:" in r.stdout, r.stdout
        static = c.run(["cat", "/var/lib/hardway/proxy/traefik.toml"]).stdout
        assert 'address = "[::]:80"' in static, static
        assert requests.get(hub.base + "/hub/api/", timeout=10).status_code == 200
        # listening on the IPv6 wildcard, port 80 (0050), state LISTEN (0A)
        tcp6 = c.run(["cat", "/proc/net/tcp6"]).stdout.split("\n")[1:]
        assert any(f"{'0' * 32}:0050" == f[1] and f[3] == "0A"
                   for f in (line.split() for line in tcp6) if len(f) > 3), tcp6
    finally:
        hw(hub, "config", "unset", "http.address")
        hw(hub, "config", "reload")
    before = config_bytes()

    # a full disk: a 64 KiB tmpfs over /etc/hardway holding a copy of its files, filled up
    keep = "/root/etc-hardway-before-tmpfs"
    c.run(["cp", "-a", "/etc/hardway", keep])
    c.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", "/etc/hardway"])
    try:
        c.sh(f"cp -a {keep}/. /etc/hardway/ && touch /etc/hardway/.lock && "
             "(dd if=/dev/zero of=/etc/hardway/filler bs=4k 2>/dev/null; true)")
        probe = c.run(["dd", "if=/dev/zero", "of=/etc/hardway/probe", "bs=4k", "count=1"],
                      check=False)
        assert probe.returncode != 0 and "No space left" in probe.stderr, probe.stderr
        c.run(["rm", "-f", "/etc/hardway/probe"])
        listing = c.run(["ls", "-A", "/etc/hardway"]).stdout
        r = hw(hub, "config", "set", "users.allowed", "bob,carol,dave", check=False)
        one_line(r, 1, f"cannot write {config}: No space left on device", "left unchanged")
        assert "Traceback" not in r.stderr
        assert config_bytes() == before
        assert c.run(["ls", "-A", "/etc/hardway"]).stdout == listing  # no temp file left
    finally:
        if c.run(["umount", "/etc/hardway"], check=False).returncode != 0:
            c.run(["umount", "-l", "/etc/hardway"])
        c.run(["rm", "-rf", keep])
    assert c.run(["findmnt", "/etc/hardway"], check=False).returncode != 0
    assert config_bytes() == before
    assert hw(hub, "config", "get", "users.admin").stdout.strip() == "alice"


def test_reload_of_a_hub_change_restarts_the_hub_only_and_drops_nothing(hub):
    c = hub.c
    u = HubUser(hub.base, "alice", hub.admin_password)
    u.sign_in(start_server=True)
    before = pids(hub)
    with RequestLoop(u, "/user/alice/api/status") as loop:
        hw(hub, "config", "set", "limits.memory", "512M")
        t0 = time.monotonic()
        r = hw(hub, "config", "reload")
        took = time.monotonic() - t0
        time.sleep(1)
    assert "restarted: jupyterhub.service" in r.stdout, r.stdout
    after = pids(hub)
    assert after[PROXY] == before[PROXY] and after[HUB] != before[HUB]
    record("reload-hub-request-loop", {"figure": len(loop.statuses),
                                       "failed": len(loop.failed),
                                       "reload_s": took, "unit": "requests",
                                       "how": "GET alice's server through the proxy every "
                                              "50 ms during `hardway config reload` of a "
                                              "hub-only change"})
    assert loop.statuses and not loop.failed, \
        f"{len(loop.failed)} of {len(loop.statuses)} failed"
    # the new limit applies to the next server start
    u.api("DELETE", "/hub/api/users/alice/server")
    deadline = time.monotonic() + 60
    while unit_props(c, "jupyter-alice-singleuser.service", "ActiveState")["ActiveState"] \
            == "active" and time.monotonic() < deadline:
        time.sleep(0.5)
    u.start_server()
    mem = unit_props(c, "jupyter-alice-singleuser.service", "MemoryMax")["MemoryMax"]
    assert mem == str(512 * 1024 * 1024)


def test_reload_of_a_dynamic_proxy_change_restarts_nothing(hub):
    before = pids(hub)
    hw(hub, "config", "set", "proxy.traefik.response_headers", "X-Robots-Tag=noindex")
    r = hw(hub, "config", "reload")
    assert "restarted: nothing" in r.stdout, r.stdout
    assert pids(hub) == before
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if requests.get(hub.base + "/hub/login", timeout=5).headers.get("X-Robots-Tag"):
            break
        time.sleep(0.2)
    assert requests.get(hub.base + "/hub/login", timeout=5).headers["X-Robots-Tag"] == "noindex"
    r = hw(hub, "config", "reload")
    assert "nothing changed; nothing restarted" in r.stdout


def test_reload_dry_run_says_and_does_nothing(hub):
    before = pids(hub)
    hw(hub, "config", "set", "spawner.http_timeout", "200")
    r = hw(hub, "config", "reload", "--dry-run")
    assert "would restart: jupyterhub.service" in r.stdout
    assert pids(hub) == before
    hw(hub, "config", "unset", "spawner.http_timeout")
    assert "nothing changed" in hw(hub, "config", "reload").stdout


BROKEN_PLUGIN = '''
from hardway.plugin import hookimpl

@hookimpl
def hardway_hub_config(settings, ctx):
    return {"Spawner": {"http_timeout": "soon"}}
'''


def test_an_invalid_hub_config_is_refused_before_anything_restarts(hub):
    c = hub.c
    c.run(["mkdir", "-p", "/root/broken"])
    c.path("/root/broken/hardway_broken.py").write_text(BROKEN_PLUGIN)
    c.path("/root/broken/pyproject.toml").write_text(
        '[project]\nname = "hardway-broken"\nversion = "1"\n'
        '[project.entry-points.hardway]\nbroken = "hardway_broken"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    uv = ["/opt/hardway/hub/bin/uv", "pip"]
    env = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
           "UV_CACHE_DIR": "/var/cache/hardway/uv"}
    c.run([*uv, "install", "--python", "/opt/hardway/hub/bin/python", "/root/broken"], env=env)
    try:
        before = pids(hub)
        hub_json = c.path("/var/lib/hardway/hub/hub.json").read_bytes()
        r = hw(hub, "config", "reload", check=False)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "Spawner.http_timeout = 'soon'" in r.stderr
        assert "nothing was changed or restarted" in r.stderr
        assert pids(hub) == before
        assert c.path("/var/lib/hardway/hub/hub.json").read_bytes() == hub_json
        assert requests.get(hub.base + "/hub/api/", timeout=5).status_code == 200
    finally:
        c.run([*uv, "uninstall", "--python", "/opt/hardway/hub/bin/python", "hardway-broken"],
              env=env)


def test_a_hub_that_does_not_come_back_is_rolled_back(hub):
    """A database nobody listens on: the check passes, the hub cannot start."""
    hub_json = hub.c.path("/var/lib/hardway/hub/hub.json").read_bytes()
    hw(hub, "config", "set", "hub.db_url", "postgresql://hub:pw@127.0.0.1:1/hub")
    r = hw(hub, "config", "reload", "--timeout", "60", check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "jupyterhub.service failed to start" in r.stderr
    assert "put the previous files back" in r.stderr
    assert hub.c.path("/var/lib/hardway/hub/hub.json").read_bytes() == hub_json
    assert requests.get(hub.base + "/hub/api/", timeout=10).status_code == 200
    hw(hub, "config", "unset", "hub.db_url")
    # the failed reload had installed the PostgreSQL driver; nothing needs it now
    out = hw(hub, "config", "reload").stdout
    assert "(nothing needs them): psycopg, psycopg-binary" in out, out
    assert "nothing changed" in hw(hub, "config", "reload").stdout


def test_logo_and_classic_notebook(hub):
    c = hub.c
    c.path("/etc/hardway/logo.png").write_bytes(PNG)
    hw(hub, "config", "set", "branding.logo", "/etc/hardway/logo.png")
    hw(hub, "config", "set", "user_environment.default_app", "classic")
    assert "restarted: jupyterhub.service" in hw(hub, "config", "reload").stdout
    assert requests.get(hub.base + "/hub/logo", timeout=10).content == PNG
    assert "/hub/logo" in requests.get(hub.base + "/hub/login", timeout=10).text
    u = user(hub, "carol")
    u.start_server()
    # as a browser: through the OAuth dance to the server's default page
    r = u.s.get(f"{hub.base}/user/carol/", timeout=60)
    assert r.status_code == 200 and r.url.endswith("/user/carol/tree"), r.url
    assert "notebook" in r.text.lower()


def test_idle_servers_are_culled(hub):
    hw(hub, "config", "set", "services.cull.timeout", "10", "services.cull.every", "5")
    hw(hub, "config", "reload")
    u = user(hub, "dave")
    u.start_server()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        model = u.api("GET", "/hub/api/users/dave").json()
        if not model.get("servers"):
            break
        time.sleep(2)
    else:
        raise AssertionError("dave's idle server was not culled within 180 s")
    record("cull-after", {"figure": time.monotonic() - t0, "unit": "s",
                          "how": "server start to culled, with timeout 10 s, every 5 s"})
