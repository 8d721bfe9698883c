"""`hardway doctor`'s pure parts: /proc/net/tcp, who holds a port, thresholds, routes
against servers, pins, DNS against local addresses, the JSON and the exit status."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from hardway.cli import main as cli
from hardway.ops import doctor as d
from hardway.ops.doctor import Finding

FIXTURES = Path(__file__).parent / "fixtures"
GIB, MIB = 1024**3, 1024**2
TRAEFIK = "/opt/hardway/hub/bin/traefik"


def test_listeners_from_proc_net_tcp_and_tcp6():
    v4 = d.parse_listeners((FIXTURES / "proc_net_tcp").read_text())
    v6 = d.parse_listeners((FIXTURES / "proc_net_tcp6").read_text())
    assert v4 == [d.Listener("127.0.0.1", 8081, 31337), d.Listener("0.0.0.0", 80, 40001),
                  d.Listener("127.0.0.1", 443, 40002)]  # the ESTABLISHED one (01) is not
    assert v6 == [d.Listener("::", 443, 50001), d.Listener("::1", 80, 50002)]


def test_socket_owners_read_proc_fd_links(tmp_path):
    proc = tmp_path / "proc"
    for pid, sock, argv in ((4242, 40002, b"python3\x00-m\x00http.server\x00443\x00"),
                            (77, 999, b"sleep\0")):
        (proc / str(pid) / "fd").mkdir(parents=True)
        os.symlink("/dev/null", proc / str(pid) / "fd" / "0")
        os.symlink(f"socket:[{sock}]", proc / str(pid) / "fd" / "3")
        (proc / str(pid) / "cmdline").write_bytes(argv)
    (proc / "self").mkdir()  # not a pid: skipped
    owners = d.socket_owners({40002, 50001}, proc)
    assert list(owners) == [40002]
    [p] = owners[40002]
    assert (p.pid, p.command, p.exe) == (4242, "python3 -m http.server 443", "")
    # one process holding two of the sockets (Traefik on 80 and 443): both are its
    os.symlink("socket:[50001]", proc / "4242" / "fd" / "4")
    owners = d.socket_owners({40002, 50001}, proc)
    assert sorted(owners) == [40002, 50001]
    assert [o.pid for o in owners[50001]] == [4242]


def ours(p: d.Process) -> bool:
    return p.exe == TRAEFIK


def test_port_held_by_another_process_is_named_with_its_fix():
    listeners = [d.Listener("127.0.0.1", 443, 1), d.Listener("0.0.0.0", 80, 2)]
    squatter = d.Process(4242, "python3 -m http.server --bind 127.0.0.1 443", "/usr/bin/python3")
    owners = {1: [squatter],
              2: [d.Process(10, "traefik --configfile x", TRAEFIK)]}
    found = {f.id: f for f in d.port_findings({80: True, 443: True}, listeners, owners, ours)}
    assert found["port.80"].status == d.OK and "hardway's Traefik" in found["port.80"].what
    bad = found["port.443"]
    assert bad.status == d.PROBLEM
    assert "pid 4242 (python3 -m http.server --bind 127.0.0.1 443)" in bad.what
    assert "kill 4242" in bad.fix and "systemctl stop jupyterhub-proxy && systemctl start " \
        "'jupyterhub-proxy-*.socket' jupyterhub-proxy" in bad.fix


def test_ports_nobody_holds_and_ports_hardway_does_not_use():
    owners = {5: [d.Process(9, "nginx: master process", "/usr/sbin/nginx")]}
    found = {f.id: f for f in d.port_findings(
        {80: True, 443: False, 8443: False}, [d.Listener("::", 443, 5)], owners, ours)}
    assert found["port.80"].status == d.PROBLEM and "nothing listens" in found["port.80"].what
    # HTTPS is off: nginx on 443 is in the way of turning it on, not broken now
    assert found["port.443"].status == d.WARNING and "nginx" in found["port.443"].what
    assert found["port.8443"].status == d.OK
    # a socket whose process this namespace cannot see
    [f] = d.port_findings({80: True}, [d.Listener("0.0.0.0", 80, 6)], {}, ours)
    assert f.status == d.PROBLEM and "not visible here" in f.what


@pytest.mark.parametrize(("size", "avail", "bad"), [
    (100 * GIB, 2 * GIB, False),     # 2 %, but over 1 GiB: the smaller threshold wins
    (100 * GIB, GIB // 2, True),     # under both
    (10 * GIB, 600 * MIB, False),    # 5.9 %: over 5 % (512 MiB)
    (10 * GIB, 400 * MIB, True),     # under 5 % of 10 GiB and under 1 GiB
    (MIB, 0, True),                  # a full tmpfs
])
def test_disk_threshold_is_the_smaller_of_1_gib_and_5_percent(size, avail, bad):
    [space, inodes] = d.disk_findings([d.Space(("/home",), size, avail, 1000, 900)])
    assert space.id == "disk./home" and inodes.id == "inodes./home"
    assert (space.status == d.PROBLEM) is bad, space
    assert inodes.status == d.OK
    if bad:
        assert "under the threshold" in space.what and "du -xsh /home" in space.fix


def test_inodes_and_filesystems_named_once():
    spaces = [d.Space(("/", "/var/lib/hardway", "/opt/hardway"), 100 * GIB, 50 * GIB,
                      10_000, 400), d.Space(("/srv",), GIB, GIB // 2, 0, 0)]
    found = d.disk_findings(spaces)
    assert [f.id for f in found] == ["disk./", "inodes./", "disk./srv"]  # no inode count: btrfs
    assert "/, /var/lib/hardway, /opt/hardway" in found[0].what
    assert found[1].status == d.PROBLEM and "400 of 10000 inodes free" in found[1].what


def test_statvfs_spaces_groups_paths_by_filesystem(tmp_path):
    (tmp_path / "a").mkdir()
    spaces = d.statvfs_spaces([tmp_path, tmp_path / "a", tmp_path / "missing"])
    assert [s.paths for s in spaces] == [(str(tmp_path), str(tmp_path / "a"))]


ROUTES_TOML = '''
[http.routers.router__2Fuser_2Falice_2F]
service = "service__2Fuser_2Falice_2F"
rule = "PathPrefix(`/user/alice/`)"
entryPoints = [ "http",]

[jupyterhub.routes.router__2F]
routespec = "/"
target = "http://127.0.0.1:8081"
router = "router__2F"
service = "service__2F"

[jupyterhub.routes.router__2F.data]
hub = true

[jupyterhub.routes.router__2Fuser_2Falice_2F]
routespec = "/user/alice/"
target = "http://127.0.0.1:41000"
router = "router__2Fuser_2Falice_2F"
service = "service__2Fuser_2Falice_2F"

[jupyterhub.routes.router__2Fuser_2Falice_2F.data]
user = "alice"
server_name = ""

[jupyterhub.routes.router__2Fuser_2Fbob_2Flab_2F]
routespec = "/user/bob/lab/"
target = "http://127.0.0.1:41001"

[jupyterhub.routes.router__2Fuser_2Fbob_2Flab_2F.data]
user = "bob"
server_name = "lab"
'''


def routes() -> list[d.Route]:
    import tomlkit

    return d.parse_routes(tomlkit.parse(ROUTES_TOML).unwrap())


def test_routes_file_users_routes_only():
    assert routes() == [d.Route("/user/alice/", "http://127.0.0.1:41000", "alice", ""),
                        d.Route("/user/bob/lab/", "http://127.0.0.1:41001", "bob", "lab")]
    assert d.parse_routes({}) == []


def users(*servers: tuple[str, str, bool]) -> list[dict]:
    out: dict[str, dict] = {}
    for user, name, ready in servers:
        out.setdefault(user, {"name": user, "servers": {}})["servers"][name] = {
            "name": name, "ready": ready}
    return list(out.values())


def test_routes_and_servers_that_match():
    servers = d.active_servers(users(("alice", "", True), ("bob", "lab", True)))
    [f] = d.compare_routes(routes(), servers, lambda target: True)
    assert f.status == d.OK and "2 route(s)" in f.what and "2 running" in f.what


def test_a_stale_route_a_missing_route_and_a_dead_target():
    servers = d.active_servers(users(("alice", "", True), ("carol", "", True),
                                     ("dave", "", False)))  # dave's is starting: no route yet
    found = d.compare_routes(routes(), servers, lambda target: not target.endswith(":41000"))
    whats = [f.what for f in found]
    assert all(f.status == d.PROBLEM and f.id == "routes" and f.fix for f in found)
    assert len(found) == 3, whats
    assert "nothing answers" in whats[0] and "alice's server" in whats[0]
    assert "stale route: /user/bob/lab/" in whats[1] and "bob's server 'lab'" in whats[1]
    assert "systemctl restart jupyterhub" in found[1].fix
    assert "carol's server runs but the proxy has no route" in whats[2]


def test_local_answers_only_tries_loopback():
    assert d.local_answers("http://10.1.2.3:8888") is True  # never contacted
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert d.local_answers(f"http://127.0.0.1:{port}") is False  # bound, not listening
        s.listen()
        assert d.local_answers(f"http://127.0.0.1:{port}") is True


def test_pins_with_markers_and_mismatches():
    pins = d.parse_pins("alembic==1.20.1\n# via x\ncachetools==7.3.2 ; python_full_version < "
                        "'3.11'\ncachetools==8.0.1 ; python_full_version >= '3.11'\n"
                        "Jupyter_Server==2.0.0\n")
    assert pins == {"alembic": {"1.20.1"}, "cachetools": {"7.3.2", "8.0.1"},
                    "jupyter-server": {"2.0.0"}}
    installed = {"alembic": "1.20.1", "cachetools": "8.0.1", "jupyter-server": "1.9",
                 "not-pinned": "0.1"}
    assert d.pin_mismatches(installed, pins) == ["jupyter-server 1.9 (pinned 2.0.0)"]


def test_installed_versions_from_metadata(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    meta = site / "Jupyter_Server-2.0.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: jupyter_server\n"
                                   "Version: 2.0.0\n\nName: not this\n")
    assert d.installed_versions(tmp_path) == {"jupyter-server": "2.0.0"}


def test_certificate_expiry_threshold():
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    assert d.expiry_finding("c", "x", now + 30 * day, "fix", now).status == d.OK
    soon = d.expiry_finding("c", "x", now + 3 * day, "fix", now)
    assert soon.status == d.PROBLEM and "in 3 day(s)" in soon.what
    gone = d.expiry_finding("c", "the cert", now - day, "renew", now)
    assert (gone.status, gone.fix) == (d.PROBLEM, "renew")
    assert "expired on 2026-11-30" in gone.what


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 203.0.113.7
        /32 host LOCAL
     |-- 203.0.113.255
        /32 link BROADCAST
"""
IF_INET6 = ("00000000000000000000000000000001 01 80 10 80       lo\n"
            "fe800000000000000000000000000001 02 40 20 80     eth0\n")


def test_local_addresses_and_dns():
    local = d.parse_local_addresses(FIB_TRIE, IF_INET6)
    assert local == {"127.0.0.1", "203.0.113.7", "::1", "fe80::1"}
    assert d.dns_finding("hub.example.org", ["203.0.113.7"], local, True).status == d.OK
    wrong = d.dns_finding("hub.example.org", ["198.51.100.1"], {"8.8.4.4"}, True)
    assert wrong.status == d.PROBLEM and "none of them an address of this machine" in wrong.what
    # behind NAT (no public address here): doctor cannot tell, so it warns
    nat = d.dns_finding("hub.example.org", ["198.51.100.1"], local - {"203.0.113.7"}, True)
    assert nat.status == d.WARNING and "NAT" in nat.what
    gone = d.dns_finding("hub.example.org", "Name or service not known", local, True)
    assert gone.status == d.PROBLEM and "does not resolve" in gone.what and "A/AAAA" in gone.fix


def test_json_shape_and_exit_status():
    found = [Finding("a", d.OK, "fine"), Finding("b", d.WARNING, "hm", "look"),
             Finding("c", d.SKIPPED, "n/a")]
    assert d.exit_code(found) == 0
    data = json.loads(d.to_json([*found, Finding("d", d.PROBLEM, "bad", "fix it")]))
    assert data[-1] == {"id": "d", "status": "problem", "what": "bad", "fix": "fix it"}
    assert all(set(x) == {"id", "status", "what", "fix"} for x in data)
    assert d.exit_code([*found, Finding("d", d.PROBLEM, "bad", "fix it")]) == 1


def test_pending_change_is_a_problem(tmp_path):
    from hardway.paths import Paths

    paths = Paths(tmp_path)
    doc = d.Doctor(paths, None, "bad yaml")
    assert doc.pending()[0].status == d.OK
    paths.pending_change.parent.mkdir(parents=True)
    paths.pending_change.write_text("{}")
    [f] = doc.pending()
    assert f.status == d.PROBLEM and "hardway config reload" in f.fix
    [s] = doc.settings_check()
    assert s.status == d.PROBLEM and "bad yaml" in s.what


def test_cli_human_and_json(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    found = [Finding("port.443", d.PROBLEM, "port 443 is held by pid 7 (x)", "kill 7"),
             Finding("clock", d.OK, "synchronized")]
    monkeypatch.setattr(d, "diagnose", lambda paths: found)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["problem", "port.443"]
    assert out[1].strip() == "fix: kill 7"
    assert out[-1] == "hardway doctor: 1 problem(s), 0 warning(s), 2 check(s)"
    assert cli.main(["doctor", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["fix"] == "kill 7"
    monkeypatch.setattr(d, "diagnose", lambda paths: found[1:])
    assert cli.main(["doctor"]) == 0


def test_cli_needs_root(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["doctor"]) == 2
    assert "run it as root (sudo hardway doctor)" in capsys.readouterr().err


def test_doctor_service_is_read_only_and_needs_its_token(tmp_path):
    from hardway.paths import Paths
    from hardway.testing import render_hub_config

    config = render_hub_config(root=tmp_path)
    assert "hardway-doctor" not in [s["name"] for s in config["JupyterHub"]["services"]]
    token = Paths(tmp_path).doctor_token
    token.parent.mkdir(parents=True)
    token.write_text("abc123\n")
    config = render_hub_config(root=tmp_path)
    services = {s["name"]: s for s in config["JupyterHub"]["services"]}
    assert services["hardway-doctor"] == {"name": "hardway-doctor", "api_token": "abc123"}
    assert "idle-culler" in services  # the culler's still accumulates
    role = next(r for r in config["JupyterHub"]["load_roles"] if r["name"] == "hardway-doctor")
    assert role["scopes"] == ["list:users", "read:servers"]
    assert role["services"] == ["hardway-doctor"]


def test_only_a_process_of_the_proxy_service_is_the_proxys_by_its_cgroup(tmp_path, monkeypatch):
    """The gate's watcher (python3, in the proxy's service) holds the proxy's sockets too;
    a python3 elsewhere holding the port is another program."""
    import os

    assert not d.in_proxy_unit(os.getpid())  # this test runs in no such unit
    assert not d.in_proxy_unit(2**22 + 1)  # no such process
    proc = tmp_path / "proc" / "7"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/system.slice/jupyterhub-proxy.service\n")
    real = d.Path

    def fake(p: str) -> object:
        return real(str(p).replace("/proc/", f"{tmp_path}/proc/", 1))

    monkeypatch.setattr(d, "Path", fake)
    assert d.in_proxy_unit(7)
    (proc / "cgroup").write_text("0::/system.slice/jupyterhub-proxy.service.d/x\n"
                                 "1:name=systemd:/user.slice/user@1000.service/app.slice/"
                                 "jupyterhub-proxy.service\n")
    assert not d.in_proxy_unit(7)
