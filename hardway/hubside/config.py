"""Runs inside the hub process: applies the rendered hub.json to JupyterHub's config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hardway.plugin.manager import Registry, make_manager
from hardway.settings import Settings


@dataclasses.dataclass(frozen=True)
class Loaded:
    registry: Registry
    settings: Settings
    config: dict[str, Any]


#: what configure() loaded, for hub-side plugin code (spawners call hardway_new_user)
current: Loaded | None = None


def load_rendered(path: str | Path) -> Loaded:
    """The settings and JupyterHub config exactly as the last install/reload rendered them."""
    data = json.loads(Path(path).read_text())
    registry = Registry(make_manager())
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
    current.registry.pm.hook.hardway_hub_config_object(c=c, settings=current.settings)
