"""The docker spawner's settings and rendered files (its behaviour on a booted host with a
real Docker engine: integration-tests/test_docker_engine.py)."""

from __future__ import annotations

import json

import pytest
from conftest import write_config

from hardway.errors import ConfigError
from hardway.ops.install import render_now
from hardway.plugin.contract import Context
from hardway.plugin.manager import load_settings


def render(paths, registry):
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "$2b$12$hash"}, pm=registry.pm)
    return {f.path: f for f in render_now(settings, registry, ctx)}


def test_the_hub_runs_dockerspawner_as_the_users_accounts(paths, registry):
    write_config(paths, "spawner:\n  type: docker\nlimits:\n  memory: 512M\n  cpu: 1.0\n")
    files = render(paths, registry)
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["JupyterHub"]["spawner_class"].endswith(".HardwayDockerSpawner")
    assert config["JupyterHub"]["hub_bind_url"] == "http://127.0.0.1:8081"  # stays local
    assert config["Spawner"]["hub_connect_url"] == "http://172.31.250.1:8081"
    assert config["Spawner"]["mem_limit"] == "512M" and config["Spawner"]["cpu_limit"] == 1.0
    d = config["DockerSpawner"]
    assert d["image"].startswith("hardway-user:") and d["pull_policy"] == "never"
    assert d["network_name"] == "hardway-users" and d["use_internal_ip"] is True
    assert d["remove"] is True
    host = d["extra_host_config"]
    assert host["cap_drop"] == ["ALL"] and "no-new-privileges" in host["security_opt"]
    # kept past its exit until the hub read why it stopped; the spawner removes it then
    assert host["auto_remove"] is False
    assert "device_requests" not in host
    assert "volumes" not in d  # the spawner mounts the account's own home, nothing else
    assert config["HardwayDockerSpawner"]["user_prefix"] == "jupyter-"


def test_the_bridge_is_confined_in_hardways_nftables_table(paths, registry):
    write_config(paths, "spawner:\n  type: docker\n")
    files = render(paths, registry)
    rules = files[paths.netpolicy].content.decode()
    assert 'iifname "hw-users" ip daddr 172.31.250.1 tcp dport 8081 accept' in rules
    assert 'iifname "hw-users" oifname "hw-users" counter drop' in rules
    assert "169.254.0.0/16" in rules.split("chain containers_forward")[1]
    # established replies come back (the proxy reaches containers); anything else is
    # refused, after the one port that is open
    chain = rules.split("chain containers_in")[1].split("}")[0]
    lines = [ln.strip() for ln in chain.splitlines() if "iifname" in ln]
    assert "established" in lines[0] and "8081 accept" in lines[1]
    assert all("reject" in ln for ln in lines[2:])
    socket = files[paths.unit("hardway-hub-bridge.socket")].content.decode()
    assert "ListenStream=172.31.250.1:8081" in socket and "FreeBind=yes" in socket
    service = files[paths.unit("hardway-hub-bridge.service")].content.decode()
    assert "systemd-socket-proxyd 127.0.0.1:8081" in service and "DynamicUser=yes" in service


def test_a_named_image_is_pulled_by_policy_and_gpus_are_a_device_request(paths, registry):
    write_config(paths, "spawner:\n  type: docker\n  docker:\n"
                        "    image: quay.io/jupyter/scipy-notebook:2025-06-02\n"
                        "    pull_policy: always\n    gpus: all\n"
                        "    allowed_images: [quay.io/jupyter/base-notebook:latest]\n")
    config = json.loads(render(paths, registry)[paths.hub_json].content)["config"]
    d = config["DockerSpawner"]
    assert d["image"] == "quay.io/jupyter/scipy-notebook:2025-06-02"
    assert d["pull_policy"] == "always"
    assert d["allowed_images"] == ["quay.io/jupyter/base-notebook:latest"]
    assert d["extra_host_config"]["device_requests"] == [
        {"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]
    assert config["Spawner"]["cmd"] == ["jupyterhub-singleuser"]


@pytest.mark.parametrize("text, needle", [
    ("image: 'Not An Image!'", "spawner.docker.image"),
    ("subnet: 10.0.0.0/30", "spawner.docker.subnet: '10.0.0.0/30' must be a private"),
    ("subnet: 8.8.8.0/24", "must be a private IPv4 network"),
    ("subnet: nonsense", "spawner.docker.subnet: 'nonsense' is not an IPv4 network"),
    ("pull_policy: sometimes", "spawner.docker.pull_policy"),
])
def test_bad_docker_settings_are_refused_naming_the_key(paths, registry, text, needle):
    write_config(paths, f"spawner:\n  type: docker\n  docker:\n    {text}\n")
    with pytest.raises(ConfigError) as e:
        render(paths, registry)
    assert needle in str(e.value)


class Docker:
    """Stands in for the System seam: answers the docker and systemctl commands the health
    check runs as a machine in the given state would (the booted-host test runs the real
    ones: integration-tests/test_docker_engine.py)."""

    def __init__(self, engine: str = "active", label: str = "/opt/hardway/envs/user-a",
                 containers: str = "jupyter-alice running Up 5 minutes\n"):
        self.engine, self.label, self.containers = engine, label, containers

    def run(self, cmd, check=True, timeout=None):
        import subprocess

        def done(out="", rc=0):
            return subprocess.CompletedProcess(cmd, rc, out, "")

        text = " ".join(cmd)
        if text.startswith("systemctl is-active docker"):
            return done(self.engine + "\n", 0 if self.engine == "active" else 3)
        if text.startswith("systemctl is-active"):
            return done("active\n")
        if text.startswith("docker version"):
            return done("26.1.5\n" if self.engine == "active" else "", 0 if
                        self.engine == "active" else 1)
        if text.startswith("docker image inspect"):
            return done(f"sha256:{'ab' * 32} 2026-11-28T18:00:00.1Z {self.label}\n")
        if text.startswith("docker network inspect"):
            return done("172.31.250.0/24\n")
        if text.startswith("docker ps"):
            return done(self.containers)
        raise AssertionError(f"unexpected command {cmd}")


def health_of(paths, registry, system):
    settings = load_settings(paths, registry)
    choice = registry.selected(settings)["spawner"]
    env = paths.user_venv.parent / "envs" / "user-a"
    env.mkdir(parents=True)
    paths.user_venv.symlink_to(env)
    return {h.id: h for h in registry.call(choice, "health", settings,
                                           Context(paths, system=system))}, str(env)


def test_health_names_the_engine_image_network_and_stopped_containers(paths, registry):
    write_config(paths, "spawner:\n  type: docker\n")
    found, env = health_of(paths, registry, Docker(
        containers="jupyter-alice running Up 5 minutes\n"
                   "jupyter-bob exited Exited (137) 4 seconds ago\n"))
    assert found["engine"].what == "docker.service: active, engine 26.1.5"
    # the built image must come from the users' environment in use
    assert found["image"].status == "warning" and env in found["image"].what
    assert "hardway config reload" in found["image"].fix
    assert found["network"].status == "ok" and "172.31.250.0/24" in found["network"].what
    assert found["containers"].what == "users' containers running: 1 (jupyter-alice)"
    stopped = found["containers-stopped"]
    assert stopped.status == "warning" and "jupyter-bob (Exited (137)" in stopped.what


def test_health_with_the_engine_down_is_one_problem_with_its_fix(paths, registry):
    write_config(paths, "spawner:\n  type: docker\n")
    found, _ = health_of(paths, registry, Docker(engine="inactive"))
    assert list(found) == ["engine"]
    assert found["engine"].status == "problem"
    assert found["engine"].what == "docker.service: inactive, engine not answering"
    assert "journalctl -u docker" in found["engine"].fix


def test_doctor_checks_what_the_selected_spawner_runs(paths, registry, monkeypatch):
    from hardway.apply import system as system_module
    from hardway.ops import doctor

    write_config(paths, "spawner:\n  type: docker\n")
    env = paths.user_venv.parent / "envs" / "user-a"
    env.mkdir(parents=True)
    paths.user_venv.symlink_to(env)
    monkeypatch.setattr(system_module, "System", lambda: Docker(label=str(env)))
    settings = load_settings(paths, registry)
    findings = {f.id: f for f in doctor.Doctor(paths, settings, "", registry).choices()}
    assert findings["spawner.docker.engine"].status == doctor.OK
    assert findings["spawner.docker.image"].status == doctor.OK
    assert findings["spawner.docker.image"].what.endswith(f"from {env}")
    assert findings["spawner.docker.hub-bridge"].status == doctor.OK


def test_the_not_running_page_says_why_her_server_stopped(monkeypatch):
    """hardway's template over JupyterHub's own (loaded as the hub loads templates)."""
    import re
    import sys
    import types
    from pathlib import Path

    from hardway_plugins.spawner import starting
    from jinja2 import (
        ChainableUndefined,
        ChoiceLoader,
        Environment,
        FileSystemLoader,
        PrefixLoader,
    )

    base = Path(sys.prefix) / "share" / "jupyterhub" / "templates"
    env = Environment(loader=ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
        FileSystemLoader([starting.TEMPLATES, base])]), undefined=ChainableUndefined,
        autoescape=True)
    page = env.get_template("not_running.html")
    monkeypatch.setattr(starting, "_stops", {("alice", ""): "it ran out of <mem>"})
    alice = types.SimpleNamespace(name="alice")
    html = page.render(hardway_stops=starting.StopNotes(), user=alice, server_name="",
                       static_url=lambda *a, **k: "")
    assert re.findall(r'<p id="hardway-stopped"[^>]*>(.*?)</p>', html) == [
        "Your server stopped by itself: it ran out of &lt;mem&gt;"]
    assert "Would you like to start it?" in html  # JupyterHub's own page is all there
    # the page is about its user and server (an admin may be looking): another server,
    # another user, or a server that stopped on purpose say nothing
    for user, name in ((alice, "other"), (types.SimpleNamespace(name="bob"), "")):
        assert "hardway-stopped" not in page.render(
            hardway_stops=starting.StopNotes(), user=user, server_name=name,
            static_url=lambda *a, **k: "")
    # without hardway's variable (another spawner): JupyterHub's page
    assert "hardway-stopped" not in page.render(user=alice, static_url=lambda *a, **k: "")


def test_her_container_lists_her_account_and_groups_and_no_other(tmp_path):
    """Her container's /etc/passwd and /etc/group (mounted read-only): nbgrader and
    every tool that asks who she is get her account's name, as on the host."""
    import grp
    import pwd

    from hardway_plugins.spawner.docker_image import write_accounts

    course = next(g for g in grp.getgrall() if g.gr_gid not in (0, 100, 65534))
    entry = pwd.struct_passwd(("jupyter-ana", "x", 1234, 1234, "", "/home/jupyter-ana",
                               "/bin/sh"))
    mine = write_accounts(tmp_path / "accounts", entry, [course.gr_gid])
    passwd = (mine / "passwd").read_text().splitlines()
    assert passwd[-1] == "jupyter-ana:x:1234:1234:hardway user:/home/jupyter-ana:/bin/bash"
    assert [line.split(":")[0] for line in passwd] == ["root", "nobody", "jupyter-ana"]
    group = (mine / "group").read_text().splitlines()
    assert f"{course.gr_name}:x:{course.gr_gid}:jupyter-ana" in group
    assert (mine / "passwd").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "accounts").stat().st_mode & 0o777 == 0o700
