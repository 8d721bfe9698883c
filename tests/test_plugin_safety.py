"""Plugins that cannot break each other: every hook result is checked and a failing
plugin is named on one line; hub-config lists merge by the documented policy; the hub
loads only the plugins it needs."""

from __future__ import annotations

import inspect
import json
import sys
import types

import pytest
from conftest import fake_entry_point, write_config

from hardway import render, testing
from hardway.cli.main import main
from hardway.errors import PluginError
from hardway.hubside import config as hub
from hardway.ops.install import collect, post_install_step
from hardway.plugin import hookimpl, hookspecs
from hardway.plugin.contract import Context
from hardway.plugin.manager import (
    CHOICE_METHODS,
    POLICIES,
    Registry,
    call_hook,
    load_settings,
    make_manager,
)


def plugin(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


def ctx_for(paths, registry) -> Context:
    return Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)


def registry_with(*plugins) -> Registry:
    pm = make_manager(load_entrypoints=False)
    for p in plugins:
        pm.register(p, name=p.__name__)
    return Registry(pm)


def test_every_hook_has_a_policy_and_every_docstring_says_what_a_failure_does():
    hooks = {n for n in vars(hookspecs) if n.startswith("hardway_")}
    assert hooks == set(POLICIES)
    for name in hooks:
        doc = " ".join((inspect.getdoc(getattr(hookspecs, name)) or "").split())
        said = "left out with a warning" if POLICIES[name].skip else "error naming the plugin"
        assert said in doc, f"{name}: the docstring must say a failure is an {said}"
    assert set(CHOICE_METHODS) >= {"hub_config", "hub_packages", "render", "install"}


def test_a_plugin_returning_none_is_named_in_one_line(paths):
    acme = plugin("acme_plugin", hardway_hub_config=lambda settings, ctx: None)
    registry = registry_with(acme)
    settings = load_settings(paths, registry)
    with pytest.raises(PluginError) as e:
        render.render_all(settings, registry, ctx_for(paths, registry))
    assert str(e.value) == ("plugin 'acme_plugin' (hook hardway_hub_config) returned None; "
                            "expected a dict of {Class: {trait: value}}")


@pytest.mark.parametrize("hook, value, expect", [
    ("hardway_hub_packages", None, "returned None; expected a list of str"),
    ("hardway_hub_packages", ["ok", 3], "expected a list of str (element 3 is not str)"),
    ("hardway_user_packages", "pandas", "returned 'pandas'; expected a list of str"),
    ("hardway_apt_packages", {"git": 1}, "expected a list of str"),
])
def test_malformed_package_lists_are_named(paths, hook, value, expect):
    registry = registry_with(plugin("acme_plugin", **{hook: lambda settings: value}))
    settings = load_settings(paths, registry)
    what = hook.split("_")[1]
    with pytest.raises(PluginError, match=rf"^plugin 'acme_plugin' \(hook {hook}\) "
                                          rf".*{__import__('re').escape(expect)}"):
        collect(registry, settings, what)


def test_malformed_hub_config_shapes_are_named(paths):
    for bad, why in ((["JupyterHub"], "expected a dict of"),
                     ({"JupyterHub": ["x"]}, "JupyterHub: ['x'] is not a dict of traits"),
                     ({"JupyterHub": {"x": object()}}, "not JSON-able")):
        registry = registry_with(plugin("acme_plugin",
                                        hardway_hub_config=lambda settings, ctx, b=bad: b))
        settings = load_settings(paths, registry)
        with pytest.raises(PluginError, match=__import__("re").escape(why)):
            render.hub_config(settings, registry, Context(paths, pm=registry.pm))


def test_a_plugin_that_raises_is_named_in_one_line_with_where(paths):
    def boom(settings, ctx):
        raise KeyError("services.acme.url")

    registry = registry_with(plugin("acme_plugin", hardway_hub_config=boom))
    settings = load_settings(paths, registry)
    with pytest.raises(PluginError) as e:
        render.render_all(settings, registry, ctx_for(paths, registry))
    msg = str(e.value)
    assert msg.startswith("plugin 'acme_plugin' (hook hardway_hub_config) raised "
                          "KeyError: 'services.acme.url' (at ")
    assert "test_plugin_safety.py:" in msg and "\n" not in msg


def test_the_cli_prints_the_one_line_and_no_traceback(paths, monkeypatch, capsys):
    monkeypatch.setenv("HARDWAY_ROOT", str(paths.root))
    bad = plugin("acme_plugin", hardway_config_keys=lambda: None)
    real = make_manager

    def manager(load_entrypoints=True):
        pm = real(load_entrypoints=False)
        pm.register(bad, name="acme_plugin")
        return pm

    monkeypatch.setattr("hardway.plugin.manager.make_manager", manager)
    assert main(["config", "show"]) == 1
    err = capsys.readouterr().err
    assert err == ("hardway: error: plugin 'acme_plugin' (hook hardway_config_keys) returned "
                   "None; expected a list of hardway.settings.Key instances\n")


def test_post_install_raising_is_named_and_new_user_raising_is_left_out(paths):
    def boom(**kw):
        raise RuntimeError("no quota tool")

    pm = make_manager(load_entrypoints=False)
    pm.register(plugin("acme_plugin",
                       hardway_post_install=lambda settings, ctx: boom(),
                       hardway_new_user=lambda unix_name, hub_name, admin, settings: boom()),
                name="acme_plugin")
    registry = Registry(pm)
    settings = load_settings(paths, registry)
    with pytest.raises(PluginError, match=r"^plugin 'acme_plugin' \(hook hardway_post_install"
                                          r"\) raised RuntimeError: no quota tool"):
        post_install_step(registry, settings, Context(paths))
    warned: list[str] = []
    assert call_hook(pm, "hardway_new_user", warn=warned.append, unix_name="jupyter-a",
                     hub_name="a", admin=False, settings=settings) == []
    assert warned == [warned[0]] and warned[0].startswith(
        "plugin 'acme_plugin' (hook hardway_new_user) raised RuntimeError: no quota tool")
    assert warned[0].endswith("; left out")


def test_a_choice_method_returning_none_is_named(paths):
    from hardway.plugin.contract import Choice

    class Broken(Choice):
        kind = "auth"
        name = "broken"

        def hub_config(self, settings, ctx):
            return None

    registry = registry_with(plugin("acme_plugin", hardway_choices=lambda: [Broken()]))
    write_config(paths, "auth:\n  type: broken\n")
    settings = load_settings(paths, registry)
    with pytest.raises(PluginError, match=r"^plugin 'acme_plugin' \(auth 'broken', "
                                          r"Choice\.hub_config\) returned None; expected a dict"):
        render.hub_config(settings, registry, Context(paths, pm=registry.pm))


def test_a_choices_hook_returning_none_is_named_not_a_zip_crash():
    with pytest.raises(PluginError, match=r"plugin 'acme_plugin' \(hook hardway_choices\) "
                                          r"returned None"):
        registry_with(plugin("acme_plugin", hardway_choices=lambda: None))


# --- the merge policy --------------------------------------------------------------------

def service_plugin(name: str, service: str, **extra) -> types.ModuleType:
    def hub_config(settings, ctx):
        return {"JupyterHub": {
            "services": [{"name": service, "url": "http://127.0.0.1:10101"}],
            "load_roles": [{"name": service, "scopes": ["read:users"],
                            "services": [service]}], **extra}}
    return plugin(name, hardway_hub_config=hub_config)


def test_services_and_roles_accumulate_and_the_culler_survives():
    config = testing.render_hub_config([service_plugin("acme_plugin", "acme"),
                                        service_plugin("beta_plugin", "beta")])
    assert [s["name"] for s in config["JupyterHub"]["services"]] == [
        "idle-culler", "acme", "beta"]
    assert [r["name"] for r in config["JupyterHub"]["load_roles"]] == [
        "idle-culler", "acme", "beta"]
    culler = config["JupyterHub"]["load_roles"][0]
    assert culler["services"] == ["idle-culler"] and "delete:servers" in culler["scopes"]
    testing.check_hub_config(config)


def test_the_same_service_name_twice_is_an_error_naming_both():
    with pytest.raises(PluginError) as e:
        testing.render_hub_config(service_plugin("acme_plugin", "idle-culler"))
    assert str(e.value) == (
        "JupyterHub.services: 'idle-culler' is given by plugin "
        "'hardway_plugins.services.cull' (hook hardway_hub_config) and again by plugin "
        "'acme_plugin' (hook hardway_hub_config); "
        "names must be unique (rename one, or turn one off)")


def test_other_lists_are_replaced_later_wins():
    a = plugin("acme_plugin", hardway_hub_config=lambda settings, ctx: {
        "Authenticator": {"admin_users": ["acme"]}, "JupyterHub": {"trusted_alt_names": ["a"]}})
    b = plugin("beta_plugin", hardway_hub_config=lambda settings, ctx: {
        "JupyterHub": {"trusted_alt_names": ["b"]}})
    config = testing.render_hub_config([a, b], {"users.admin": ["alice"]})
    assert config["Authenticator"]["admin_users"] == ["acme"]
    assert config["JupyterHub"]["trusted_alt_names"] == ["b"]


def test_services_must_be_named_dicts():
    bad = plugin("acme_plugin", hardway_hub_config=lambda settings, ctx: {
        "JupyterHub": {"services": [{"url": "http://x"}]}})
    with pytest.raises(PluginError, match=r"plugin 'acme_plugin' \(hook hardway_hub_config\) "
                                          r"gives JupyterHub\.services"):
        testing.render_hub_config(bad)


def test_merging_changes_neither_input():
    base = {"JupyterHub": {"services": [{"name": "a"}]}}
    extra = {"JupyterHub": {"services": [{"name": "b"}], "x": 1}}
    before = json.dumps([base, extra])
    out = render.merge_hub_config(base, extra, "x", {})
    assert json.dumps([base, extra]) == before
    assert out == {"JupyterHub": {"services": [{"name": "a"}, {"name": "b"}], "x": 1}}


# --- entry points: import failures, and what the hub loads ---------------------------------

BROKEN = "import hardway_no_such_module  # noqa\n"
HUB_HOOK = ("from hardway.plugin import hookimpl\n\n"
            "@hookimpl\ndef hardway_hub_config_object(c, settings):\n"
            "    c.JupyterHub.template_vars = {'hubhook': settings['http.port']}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path to install fake entry-point plugins into."""
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    yield where
    for name in ("hardway_broken_plugin", "hardway_hubhook_plugin"):
        sys.modules.pop(name, None)


def test_an_entry_point_that_fails_to_import_is_named(site):
    fake_entry_point(site, "broken", "hardway_broken_plugin", BROKEN)
    with pytest.raises(PluginError) as e:
        make_manager()
    msg = str(e.value)
    assert msg.startswith("plugin 'broken' (entry point hardway: broken = hardway_broken_plugin)"
                          " failed to import: ModuleNotFoundError: No module named "
                          "'hardway_no_such_module' (at ")
    assert msg.endswith("HARDWAY_BLOCK_PLUGINS=broken")


def test_a_blocked_entry_point_is_not_imported(site, monkeypatch):
    fake_entry_point(site, "broken", "hardway_broken_plugin", BROKEN)
    monkeypatch.setenv("HARDWAY_BLOCK_PLUGINS", "broken")
    assert not make_manager().has_plugin("broken")


def render_to_disk(paths, registry) -> None:
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    for f in render.render_all(settings, registry, ctx):
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_bytes(f.content)


def test_the_hub_loads_what_it_needs_and_never_imports_a_broken_unselected_plugin(
        paths, site, sample_plugin):
    from traitlets.config import Config

    fake_entry_point(site, "hubhook", "hardway_hubhook_plugin", HUB_HOOK)
    registry = Registry(make_manager())
    render_to_disk(paths, registry)
    data = json.loads(paths.hub_json.read_text())
    # the sample plugin is installed but neither chosen nor hub-side: not loaded there
    assert data["plugins"] == ["hubhook"]
    assert any(s["name"] == "sample-reporter" for s in data["config"]["JupyterHub"]["services"])
    # then a broken plugin is installed: every command names it, the hub never imports it
    fake_entry_point(site / "later", "broken", "hardway_broken_plugin", BROKEN)
    sys.path.insert(0, str(site / "later"))
    try:
        with pytest.raises(PluginError, match="plugin 'broken'"):
            make_manager()
        c = Config()
        hub.configure(c, str(paths.hub_json))
        assert c.JupyterHub.template_vars == {"hubhook": 80}
        assert hub.current is not None
        assert hub.current.registry.pm.has_plugin("hubhook")
        assert not hub.current.registry.pm.has_plugin("sample")
        assert not hub.current.registry.pm.has_plugin("broken")
        assert "hardway_broken_plugin" not in sys.modules
        assert hub.current.settings["services.cull.timeout"] == 3600
    finally:
        sys.path.remove(str(site / "later"))
        hub.current = None


def test_a_plugin_the_hub_needs_but_cannot_find_is_named(paths, site):
    fake_entry_point(site, "hubhook", "hardway_hubhook_plugin", HUB_HOOK)
    render_to_disk(paths, Registry(make_manager()))
    data = json.loads(paths.hub_json.read_text())
    data["plugins"] = ["gone"]
    paths.hub_json.write_text(json.dumps(data))
    with pytest.raises(PluginError, match=r"the hub needs plugin\(s\) 'gone'"):
        hub.load_rendered(paths.hub_json)


def test_a_hub_json_without_a_plugin_list_loads_every_plugin(paths, site):
    fake_entry_point(site, "hubhook", "hardway_hubhook_plugin", HUB_HOOK)
    render_to_disk(paths, Registry(make_manager()))
    data = json.loads(paths.hub_json.read_text())
    del data["plugins"]  # rendered by an earlier hardway
    paths.hub_json.write_text(json.dumps(data))
    try:
        assert hub.load_rendered(paths.hub_json).registry.pm.has_plugin("hubhook")
    finally:
        hub.current = None


def test_a_config_error_a_plugin_raises_is_its_own_message(paths):
    from hardway.errors import ConfigError

    def refuse(settings, ctx):
        raise ConfigError("services.acme.url is required: set it with hardway config set")

    registry = registry_with(plugin("acme_plugin", hardway_hub_config=refuse))
    settings = load_settings(paths, registry)
    with pytest.raises(ConfigError, match=r"^services\.acme\.url is required"):
        render.hub_config(settings, registry, ctx_for(paths, registry))


CHOICE = ("from hardway.plugin.contract import Choice\nfrom hardway.plugin import hookimpl\n\n"
          "class Lab(Choice):\n    kind = 'auth'\n    name = 'labsso'\n\n"
          "    def hub_config(self, settings, ctx):\n"
          "        return {'JupyterHub': {'authenticator_class': 'dummy'}}\n\n"
          "@hookimpl\ndef hardway_choices():\n    return [Lab()]\n")


def test_the_hub_loads_the_plugin_of_the_chosen_authenticator(paths, site):
    fake_entry_point(site, "labsso", "hardway_labsso_plugin", CHOICE)
    try:
        write_config(paths, "auth:\n  type: labsso\n")
        render_to_disk(paths, Registry(make_manager()))
        assert json.loads(paths.hub_json.read_text())["plugins"] == ["labsso"]
        loaded = hub.load_rendered(paths.hub_json)
        assert loaded.registry.selected(loaded.settings)["auth"].name == "labsso"
    finally:
        sys.modules.pop("hardway_labsso_plugin", None)
