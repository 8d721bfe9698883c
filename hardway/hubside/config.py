"""Runs inside the hub process: applies the rendered hub.json to JupyterHub's config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hardway.plugin.manager import Registry, call_hook, make_manager
from hardway.settings import Settings


@dataclasses.dataclass(frozen=True)
class Loaded:
    registry: Registry
    settings: Settings
    config: dict[str, Any]


#: what configure() loaded, for hub-side plugin code (spawners call hardway_new_user)
current: Loaded | None = None


def load_rendered(path: str | Path) -> Loaded:
    """The settings and JupyterHub config exactly as the last install/reload rendered them.

    Loads the built-in plugins and only the entry-point plugins hub.json names (those of
    the selected choices and those with hub-side hooks): a broken plugin the hub does not
    need is never imported here. A hub.json rendered before that list existed loads every
    installed plugin, as before. Keys of plugins not loaded are not declared here, and
    nothing in the hub reads them.
    """
    data = json.loads(Path(path).read_text())
    plugins = data.get("plugins")
    registry = Registry(make_manager(True if plugins is None else plugins))
    decl = registry.declarations()
    values = {key.name: data["settings"].get(key.name, key.default) for key in decl}
    settings = Settings(decl, values, {k: "rendered" for k in values})
    return Loaded(registry, settings, data["config"])


def configure(c: Any, path: str) -> None:
    """Called from the generated jupyterhub_config.py."""
    global current
    from traitlets.config import Config

    current = load_rendered(path)
    c.merge(Config(current.config))
    call_hook(current.registry.pm, "hardway_hub_config_object", c=c, settings=current.settings)


def new_user(unix_name: str, hub_name: str, admin: bool, warn: Any = None) -> None:
    """Tell plugins a unix user was created (hardway_new_user); a plugin that fails is left
    out with a warning (``warn``: the spawner's log), the spawn goes on."""
    if current is None:
        return
    kwargs = {"warn": warn} if warn is not None else {}
    call_hook(current.registry.pm, "hardway_new_user", unix_name=unix_name, hub_name=hub_name,
              admin=admin, settings=current.settings, **kwargs)
