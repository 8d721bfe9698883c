"""Building the plugin manager and the registry of choices."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

import pluggy

from hardway import tls
from hardway.errors import ConfigError, HardwayError
from hardway.paths import Paths
from hardway.settings import Declarations, Key, Layer, Settings, core_keys, merge, read_layers

from . import hookspecs
from .contract import KINDS, Choice

#: The built-in choices, registered exactly as third-party plugins are (by module).
DEFAULT_PLUGINS = (
    "hardway_plugins.auth.firstuse",
    "hardway_plugins.auth.native",
    "hardway_plugins.auth.dummy",
    "hardway_plugins.auth.pam",
    "hardway_plugins.auth.lti",
    "hardway_plugins.auth.oauth",
    "hardway_plugins.auth.ldap",
    "hardway_plugins.spawner.systemd",
    "hardway_plugins.proxy.traefik",
    "hardway_plugins.services.cull",
    "hardway_plugins.services.database",
)

ENTRY_POINT_GROUP = "hardway"


def make_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager: built-ins, then installed ``hardway`` entry points.

    HARDWAY_BLOCK_PLUGINS=name,name keeps plugins from loading;
    HARDWAY_TRACE_PLUGINS=1 prints every hook call to stderr.
    """
    pm = pluggy.PluginManager("hardway")
    pm.add_hookspecs(hookspecs)
    for name in filter(None, os.environ.get("HARDWAY_BLOCK_PLUGINS", "").split(",")):
        pm.set_blocked(name.strip())
    for modname in DEFAULT_PLUGINS:
        if pm.is_blocked(modname):
            continue
        pm.register(importlib.import_module(modname), name=modname)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    if os.environ.get("HARDWAY_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    return pm


class Registry:
    """Choices by kind and name, plus every declared key."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.choices: dict[str, dict[str, Choice]] = {k: {} for k in KINDS}
        owners: dict[tuple[str, str], str] = {}
        # in registration order (built-ins first), so a clash names the newcomer last
        pairs = zip(_impl_plugins(pm, "hardway_choices"), pm.hook.hardway_choices(),
                    strict=True)
        for plugin, result in reversed(list(pairs)):
            for choice in result or []:
                key = (choice.kind, choice.name)
                if choice.kind not in KINDS:
                    raise HardwayError(f"plugin {plugin} registers a choice of unknown kind "
                                       f"{choice.kind!r}; kinds are {', '.join(KINDS)}")
                if key in owners:
                    raise HardwayError(f"{choice.kind} {choice.name!r} is registered twice: "
                                       f"by {owners[key]} and by {plugin}")
                owners[key] = plugin
                self.choices[choice.kind][choice.name] = choice
        self.owners = owners

    def keys(self) -> list[Key]:
        keys = core_keys()
        for kind in KINDS:
            for name, choice in self.choices[kind].items():
                owner = self.owners[(kind, name)]
                for key in choice.keys():
                    if not key.name.startswith(choice.prefix() + "."):
                        raise HardwayError(f"plugin {owner} declares {key.name}, outside "
                                           f"its prefix {choice.prefix()}.")
                    keys.append(_owned(key, name))
        for result in self.pm.hook.hardway_config_keys():
            keys.extend(result or [])
        return keys

    def declarations(self) -> Declarations:
        return Declarations(self.keys())

    def names(self, kind: str) -> list[str]:
        return sorted(self.choices[kind])

    def selected(self, settings: Settings) -> dict[str, Choice]:
        return {kind: self.choices[kind][settings[f"{kind}.type"]] for kind in KINDS}

    def validate(self, settings: Settings) -> None:
        """Cross-key checks: chosen plugins exist, then each chosen plugin's own checks."""
        for kind in KINDS:
            name = settings[f"{kind}.type"]
            if name not in self.choices[kind]:
                raise ConfigError(
                    f"{kind}.type: no {kind} plugin named {name!r} is installed "
                    f"(origin: {settings.origins[f'{kind}.type']}). Installed: "
                    f"{', '.join(self.names(kind))}. A plugin may be missing: install it "
                    "with bootstrap.py --plugin SPEC."
                )
        logo = settings["branding.logo"]
        if logo and not os.access(logo, os.R_OK):
            raise ConfigError(f"branding.logo: {logo} is not a readable file "
                              f"(origin: {settings.origins['branding.logo']})")
        tls.validate(settings)
        for choice in self.selected(settings).values():
            for key in choice.keys():
                if key.required and settings[key.name] in (None, "", [], {}):
                    raise ConfigError(f"{key.name} is required when {choice.kind}.type is "
                                      f"{choice.name}: {key.description}")
            choice.validate(settings)


def _owned(key: Key, owner: str) -> Key:
    import dataclasses

    return dataclasses.replace(key, owner=owner)


def _impl_plugins(pm: pluggy.PluginManager, hook: str) -> Iterable[str]:
    # pluggy calls implementations last-registered first; names in the same order
    impls = getattr(pm.hook, hook).get_hookimpls()
    return [impl.plugin_name for impl in reversed(impls)]


def load_settings(paths: Paths, registry: Registry,
                  extra_layers: Iterable[Layer] = ()) -> Settings:
    """Read every layer, merge and validate: the settings every command works from."""
    decl = registry.declarations()
    layers = read_layers(paths.config_file, paths.config_d, decl)
    settings = merge(decl, [*layers, *extra_layers])
    registry.validate(settings)
    return settings

