"""A test kit for plugin authors (public API): render what your plugin contributes and
check it against JupyterHub's real classes, without a machine.

    from hardway import testing
    import my_plugin

    def test_my_service():
        config = testing.render_hub_config(my_plugin, {"services.cull.enabled": True})
        testing.check_hub_config(config)          # AssertionError listing every problem
        names = [s["name"] for s in config["JupyterHub"]["services"]]
        assert names == ["idle-culler", "my-service"]

    def test_my_packages():
        assert testing.run_hook(my_plugin, "hardway_hub_packages") == ["my-package==1.0"]

Every function builds a fresh plugin manager with the built-in plugins plus the ones you
give (a module, or any object with ``@hookimpl`` functions), never the installed entry
points, so the result does not depend on what else is installed. Hooks are called and
checked exactly as ``hardway`` calls them (:func:`hardway.plugin.manager.call_hook`): a plugin
returning something malformed raises the same one-line :class:`PluginError`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pluggy

from hardway.paths import Paths
from hardway.plugin import hookspecs
from hardway.plugin.contract import Context
from hardway.plugin.manager import Registry, call_hook, make_manager
from hardway.settings import Settings, merge

__all__ = ["check_hub_config", "hub_config_problems", "make_registry", "make_settings",
           "render_hub_config", "render_hub_json", "run_hook"]


def _plugins(plugins: Any) -> list[Any]:
    if plugins is None:
        return []
    if isinstance(plugins, Iterable) and not isinstance(plugins, str | bytes):
        return list(plugins)
    return [plugins]


def _name(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__


def make_registry(plugins: Any = None) -> Registry:
    """A registry of the built-ins plus ``plugins`` (one, or a list; each registered under
    its module name), without the installed entry points."""
    pm: pluggy.PluginManager = make_manager(load_entrypoints=False)
    for plugin in _plugins(plugins):
        pm.register(plugin, name=_name(plugin))
    pm.check_pending()
    return Registry(pm)


def make_settings(registry: Registry, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Validated settings: the declared defaults with ``overrides`` (``{dotted key: value}``
    or nested, as in /etc/hardway/config.yaml) on top, type-checked and validated as
    ``hardway config set`` would."""
    decl = registry.declarations()
    settings = merge(decl, [decl.flatten(dict(overrides or {}), "test overrides")])
    registry.validate(settings)
    return settings


def render_hub_json(plugins: Any = None, settings: Mapping[str, Any] | None = None,
                    root: Path | None = None) -> dict[str, Any]:
    """hub.json as ``hardway config reload`` would render it with ``plugins`` installed:
    ``{"config": ..., "settings": ..., "plugins": [...]}``. Paths in it live under
    ``root`` (a new temporary directory when not given; nothing is written there)."""
    from hardway.ops.install import read_inputs
    from hardway.render import hub_files

    registry = make_registry(plugins)
    values = make_settings(registry, settings)
    with tempfile.TemporaryDirectory(prefix="hardway-testing-") as tmp:
        paths = Paths(root or Path(tmp))
        ctx = Context(paths, {"proxy_api_hash": "test"}, pm=registry.pm,
                      inputs=read_inputs(registry, values, paths))
        hub_json = next(f for f in hub_files(values, registry, ctx) if f.path == paths.hub_json)
    return json.loads(hub_json.content)


def render_hub_config(plugins: Any = None, settings: Mapping[str, Any] | None = None,
                      root: Path | None = None) -> dict[str, Any]:
    """The JupyterHub config (``{Class: {trait: value}}``) hardway renders with
    ``plugins`` installed: core, the chosen choices', every plugin's, merged by the
    documented policy (services and roles accumulate)."""
    return render_hub_json(plugins, settings, root)["config"]


def run_hook(plugin: Any, hook: str, settings: Mapping[str, Any] | None = None,
             **kwargs: Any) -> Any:
    """Call ``plugin``'s implementation of ``hook`` the way hardway does (checked) and
    return its result. ``settings`` (overrides) and ``ctx`` (a render context under a
    temporary root) are passed when the hook takes them and you give none."""
    registry = make_registry(plugin)
    name = _name(plugin)
    impl = next((i for i in getattr(registry.pm.hook, hook).get_hookimpls()
                 if i.plugin_name == name), None)
    if impl is None:
        raise AssertionError(f"{name} does not implement {hook}")
    if "settings" in impl.argnames and "settings" not in kwargs:
        kwargs["settings"] = make_settings(registry, settings)
    with tempfile.TemporaryDirectory(prefix="hardway-testing-") as tmp:
        if "ctx" in impl.argnames and "ctx" not in kwargs:
            kwargs["ctx"] = Context(Paths(Path(tmp)), {"proxy_api_hash": "test"},
                                    pm=registry.pm)
        only = pluggy.PluginManager("hardway")
        only.add_hookspecs(hookspecs)
        only.register(plugin, name=name)
        results = call_hook(only, hook, **{a: kwargs[a] for a in impl.argnames})
    return results[0][1] if results else None


def _stub() -> Any:
    from traitlets import HasTraits

    return HasTraits()


def _service_problems(services: Any) -> list[str]:
    from jupyterhub.services.service import Service
    from traitlets import TraitError

    if not isinstance(services, list):
        return [f"JupyterHub.services = {services!r:.60}: not a list"]
    out: list[str] = []
    traits = Service.class_traits(input=True)
    seen: set[str] = set()
    for spec in services:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            out.append(f"JupyterHub.services: {spec!r:.60} has no name")
            continue
        if name in seen:
            out.append(f"JupyterHub.services: {name!r} is defined twice")
        seen.add(name)
        for key, value in spec.items():
            if key not in traits:
                out.append(f"JupyterHub.services[{name!r}].{key}: no such service field")
                continue
            try:
                traits[key].validate(_stub(), value)
            except (TraitError, TypeError, ValueError) as e:
                out.append(f"JupyterHub.services[{name!r}].{key} = {value!r:.60}: {e}")
    return out


def _role_problems(roles: Any, services: Any) -> list[str]:
    from jupyterhub.roles import _validate_role_name
    from jupyterhub.scopes import _check_scopes_exist

    if not isinstance(roles, list):
        return [f"JupyterHub.load_roles = {roles!r:.60}: not a list"]
    out: list[str] = []
    service_names = {s.get("name") for s in services if isinstance(s, dict)}
    allowed = {"name", "description", "scopes", "users", "services", "groups"}
    for role in roles:
        name = role.get("name") if isinstance(role, dict) else None
        if not isinstance(name, str):
            out.append(f"JupyterHub.load_roles: {role!r:.60} has no name")
            continue
        try:
            _validate_role_name(name)
        except Exception as e:  # jupyterhub's InvalidNameError
            out.append(f"JupyterHub.load_roles[{name!r}]: {' '.join(str(e).split())}")
        for key in sorted(set(role) - allowed):
            out.append(f"JupyterHub.load_roles[{name!r}].{key}: no such role field")
        try:
            _check_scopes_exist(role.get("scopes", []), who_for=f"role {name}")
        except Exception as e:  # jupyterhub's ScopeNotFound
            out.append(f"JupyterHub.load_roles[{name!r}].scopes: {e}")
        for svc in role.get("services", []):
            if svc not in service_names:
                out.append(f"JupyterHub.load_roles[{name!r}].services: {svc!r} is not in "
                           "JupyterHub.services")
    return out


def hub_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Every problem JupyterHub would find in ``config``, one line each: each class is
    imported by the name JupyterHub would use, each trait must exist and its value must
    pass the trait's validation (:func:`hardway.hubcheck.problems`, the check reload runs
    before a restart); services and roles are checked field by field, scopes included."""
    from hardway.ops.hubcheck import problems

    hub = config.get("JupyterHub", {})
    out = problems(dict(config))
    services = hub.get("services", [])
    out += _service_problems(services)
    out += _role_problems(hub.get("load_roles", []), services if isinstance(services, list)
                          else [])
    return out


def check_hub_config(config: Mapping[str, Any]) -> None:
    """Raise AssertionError listing every problem :func:`hub_config_problems` finds."""
    found = hub_config_problems(config)
    if found:
        raise AssertionError("JupyterHub would refuse this config:\n  " + "\n  ".join(found))
