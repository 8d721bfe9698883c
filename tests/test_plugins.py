from __future__ import annotations

import types

import pytest
from conftest import write_config

from hardway.errors import ConfigError, HardwayError
from hardway.ops.install import collect, render_now
from hardway.plugin import hookimpl
from hardway.plugin.contract import Choice, Context
from hardway.plugin.manager import DEFAULT_PLUGINS, Registry, load_settings, make_manager
from hardway.settings import Key
from hardway.settings import keytypes as kt


class Lab(Choice):
    kind = "auth"
    name = "labsso"
    description = "a third-party authenticator"

    def keys(self):
        return [Key("auth.labsso.realm", kt.Str(empty=False), "", "SSO realm", required=True)]

    def validate(self, settings):
        if settings["auth.labsso.realm"] == "forbidden":
            raise ConfigError("auth.labsso.realm: 'forbidden' is reserved")

    def hub_packages(self, settings):
        return ["labsso-authenticator==1.0"]

    def hub_config(self, settings, ctx):
        return {"JupyterHub": {"authenticator_class": "labsso.Auth"},
                "LabAuth": {"realm": settings["auth.labsso.realm"]}}


def third_party() -> types.ModuleType:
    mod = types.ModuleType("hardway_labsso")

    @hookimpl
    def hardway_choices():
        return [Lab()]

    @hookimpl
    def hardway_config_keys():
        return [Key("site.motd", kt.Str(), "welcome", "Message of the day.", owner="labsso")]

    @hookimpl
    def hardway_hub_packages(settings):
        return ["jupyterhub-idle-culler"]

    @hookimpl
    def hardway_user_packages(settings):
        return ["pandas"]

    @hookimpl
    def hardway_apt_packages(settings):
        return ["git"]

    @hookimpl
    def hardway_hub_config(settings, ctx):
        return {"JupyterHub": {"template_vars": {"motd": settings["site.motd"]}}}

    @hookimpl
    def hardway_traefik_static(settings, ctx):
        return {"log": {"format": "json"}}

    @hookimpl
    def hardway_traefik_dynamic(settings, ctx):
        return {"http": {"middlewares": {"hsts": {"headers": {"stsSeconds": 60}}}}}

    for f in (hardway_choices, hardway_config_keys, hardway_hub_packages,
              hardway_user_packages, hardway_apt_packages, hardway_hub_config,
              hardway_traefik_static, hardway_traefik_dynamic):
        setattr(mod, f.__name__, f)
    return mod


@pytest.fixture
def registry_plus():
    pm = make_manager(load_entrypoints=False)
    pm.register(third_party(), name="hardway_labsso")
    return Registry(pm)


def test_builtins_are_plugins(registry):
    assert registry.names("auth") == ["dummy", "firstuse", "generic", "github", "ldap",
                                      "lti11", "lti13", "native", "pam"]
    assert registry.names("spawner") == ["docker", "systemd"]
    assert registry.names("proxy") == ["traefik"]
    owners = {registry.owners[k] for k in registry.owners}
    assert owners < set(DEFAULT_PLUGINS)
    assert registry.owners[("auth", "lti13")] == "hardway_plugins.auth.lti"


def test_third_party_choice_keys_and_validation(paths, registry_plus):
    write_config(paths, "auth:\n  type: labsso\n")
    with pytest.raises(ConfigError, match=r"auth\.labsso\.realm is required when auth\.type is"):
        load_settings(paths, registry_plus)
    write_config(paths, "auth:\n  type: labsso\n  labsso:\n    realm: forbidden\n")
    with pytest.raises(ConfigError, match="reserved"):
        load_settings(paths, registry_plus)
    write_config(paths, "auth:\n  type: labsso\n  labsso:\n    realm: LAB\n")
    s = load_settings(paths, registry_plus)
    assert s.origins["auth.labsso.realm"].endswith(":4")


def test_package_hooks_are_merged(paths, registry_plus):
    write_config(paths, "auth:\n  type: labsso\n  labsso:\n    realm: LAB\n")
    s = load_settings(paths, registry_plus)
    assert "labsso-authenticator==1.0" in collect(registry_plus, s, "hub")
    assert "jupyterhub-idle-culler" in collect(registry_plus, s, "hub")
    assert collect(registry_plus, s, "user") == ["pandas"]
    assert collect(registry_plus, s, "apt") == ["git", "nftables"]  # nftables: systemd spawner


def test_render_hooks(paths, registry_plus):
    import json

    import tomlkit

    write_config(paths, "auth:\n  type: labsso\n  labsso:\n    realm: LAB\nsite:\n  motd: hi\n")
    s = load_settings(paths, registry_plus)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry_plus.pm)
    files = {f.path: f for f in render_now(s, registry_plus, ctx)}
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["JupyterHub"]["authenticator_class"] == "labsso.Auth"
    assert config["JupyterHub"]["template_vars"] == {"motd": "hi"}
    static = tomlkit.loads(files[paths.traefik_toml].content.decode()).unwrap()
    assert static["log"] == {"level": "INFO", "noColor": True, "format": "json"}
    extra = files[paths.rules_dir / "50-plugins.toml"]
    assert extra.component == "proxy-dynamic"
    assert "stsSeconds" in extra.content.decode()


def test_duplicate_choice_names_both_plugins():
    pm = make_manager(load_entrypoints=False)
    dup = types.ModuleType("dup")

    class Dup(Choice):
        kind = "auth"
        name = "firstuse"

    @hookimpl
    def hardway_choices():
        return [Dup()]

    dup.hardway_choices = hardway_choices
    pm.register(dup, name="dup")
    with pytest.raises(HardwayError, match=r"registered twice: by hardway_plugins\.auth\.firstuse"):
        Registry(pm)


def test_a_plugin_can_be_blocked(monkeypatch):
    monkeypatch.setenv("HARDWAY_BLOCK_PLUGINS",
                       "hardway_plugins.auth.firstuse,hardway_plugins.auth.lti")
    names = Registry(make_manager(load_entrypoints=False)).names("auth")
    assert "firstuse" not in names and "lti11" not in names and "native" in names


def test_keys_outside_the_prefix_are_refused():
    pm = make_manager(load_entrypoints=False)
    bad = types.ModuleType("bad")

    class Bad(Choice):
        kind = "auth"
        name = "bad"

        def keys(self):
            return [Key("http.port2", kt.Int(), 1, "x")]

    @hookimpl
    def hardway_choices():
        return [Bad()]

    bad.hardway_choices = hardway_choices
    pm.register(bad, name="bad")
    with pytest.raises(HardwayError, match=r"outside its prefix auth\.bad\."):
        Registry(pm).declarations()
