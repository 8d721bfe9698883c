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
