"""The sample third-party plugin (tests/sample_plugin), installed through its entry point
and tested the way a plugin author would: with hardway.testing."""

from __future__ import annotations

import importlib

import pytest

from hardway import testing
from hardway.plugin.manager import Registry, make_manager


@pytest.fixture
def sample(sample_plugin):
    return importlib.import_module("hardway_sample_plugin")


def services(config):
    return {s["name"]: s for s in config["JupyterHub"].get("services", [])}


def roles(config):
    return {r["name"]: r for r in config["JupyterHub"].get("load_roles", [])}


def test_it_is_found_through_its_entry_point(sample_plugin):
    pm = make_manager()
    assert pm.has_plugin("sample")
    assert "services.sample.enabled" in Registry(pm).declarations()


def test_its_service_sits_next_to_the_cullers_and_jupyterhub_accepts_both(sample):
    config = testing.render_hub_config(sample)
    testing.check_hub_config(config)
    assert list(services(config)) == ["idle-culler", "sample-reporter"]
    assert roles(config)["idle-culler"]["services"] == ["idle-culler"]
    assert "delete:servers" in roles(config)["idle-culler"]["scopes"]
    assert roles(config)["sample-reporter"] == {
        "name": "sample-reporter", "description": "read the hub's version",
        "scopes": ["read:hub"], "services": ["sample-reporter"]}


def test_its_key_turns_it_off_and_the_culler_stays(sample):
    config = testing.render_hub_config(sample, {"services.sample.enabled": False})
    assert list(services(config)) == ["idle-culler"]
    off = testing.render_hub_config(sample, {"services": {"cull": {"enabled": False}}})
    assert list(services(off)) == ["sample-reporter"]
    testing.check_hub_config(off)


def test_run_hook_returns_its_checked_result(sample):
    result = testing.run_hook(sample, "hardway_hub_config")
    assert result["JupyterHub"]["services"] == [{"name": "sample-reporter", "display": False}]
    keys = testing.run_hook(sample, "hardway_config_keys")
    assert [k.name for k in keys] == ["services.sample.enabled"]


def test_the_hub_is_not_told_to_load_it(sample, paths):
    """Not a choice, no hub-side hook: the hub has no reason to import it."""
    import json

    from hardway.plugin.contract import Context
    from hardway.plugin.manager import load_settings
    from hardway.render import render_all

    registry = Registry(make_manager())  # every installed entry point, the sample's too
    assert registry.pm.has_plugin("sample")
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    files = {f.path: f for f in render_all(settings, registry, ctx)}
    hub_json = json.loads(files[paths.hub_json].content)
    assert hub_json["plugins"] == []
    assert "sample-reporter" in services(hub_json["config"])


def test_the_kit_finds_what_jupyterhub_would_refuse(sample):
    config = testing.render_hub_config(sample)
    config["JupyterHub"]["services"].append({"name": "x", "commandline": ["true"]})
    config["JupyterHub"]["load_roles"].append({"name": "x-role", "scopes": ["read:everything"],
                                               "services": ["nobody"]})
    config["Spawner"]["no_such_trait"] = 1
    found = testing.hub_config_problems(config)
    assert any("services['x'].commandline: no such service field" in p for p in found)
    assert any("Scope 'read:everything'" in p for p in found)
    assert any("'nobody' is not in JupyterHub.services" in p for p in found)
    assert any("Spawner.no_such_trait" in p for p in found)
    with pytest.raises(AssertionError, match="JupyterHub would refuse"):
        testing.check_hub_config(config)
