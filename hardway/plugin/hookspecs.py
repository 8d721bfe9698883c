"""Every hook hardway calls, in one module.

Plugins implement these with ``@hardway.plugin.hookimpl``. pluggy passes keyword arguments
only; results come back as a list (last registered plugin first) unless a hook says
"first non-None result wins". A plugin may implement any subset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hardway.settings import Key, Settings

    from .contract import Choice, Context

hookspec = pluggy.HookspecMarker("hardway")
hookimpl = pluggy.HookimplMarker("hardway")


@hookspec
def hardway_choices() -> list[Choice]:
    """Register authenticator, spawner or proxy choices.

    Called once when the plugin manager is built. Return a list of
    :class:`hardway.plugin.Choice` instances; ``auth.type``, ``spawner.type`` and
    ``proxy.type`` pick one by ``(kind, name)``. Two plugins registering the same kind
    and name is an error naming both.
    """


@hookspec
def hardway_config_keys() -> list[Key]:
    """Declare extra settings that do not belong to one choice.

    Called when settings are loaded. Return a list of :class:`hardway.settings.Key`;
    names must not clash with another plugin's. (Keys of a choice come from
    ``Choice.keys()``.)
    """


@hookspec
def hardway_hub_packages(settings: Settings) -> list[str]:
    """Extra pip requirements for the hub environment (/opt/hardway/hub).

    Called by ``hardway install`` and ``reload``; results from every plugin are merged.
    """


@hookspec
def hardway_user_packages(settings: Settings) -> list[str]:
    """Extra pip requirements for the users' environment (/opt/hardway/user).

    Called by ``hardway install`` and ``reload``; results from every plugin are merged.
    """


@hookspec
def hardway_apt_packages(settings: Settings) -> list[str]:
    """Extra Debian packages to install. Called by ``hardway install``; merged."""


@hookspec
def hardway_hub_config(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Contribute JupyterHub configuration as JSON-able ``{Class: {trait: value}}``.

    Called while rendering (pure: no side effects). Every plugin's result is deep-merged
    into hub.json after the chosen authenticator's, spawner's and proxy's own
    ``Choice.hub_config``; later plugins win on conflicts.
    """


@hookspec
def hardway_hub_config_object(c: Any, settings: Settings) -> None:
    """Last word on the traitlets config object ``c``, at hub start.

    Called inside jupyterhub_config.py after hub.json has been applied, for what cannot
    be expressed as JSON (callables, objects). Return value ignored.
    """


@hookspec
def hardway_traefik_static(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Extra Traefik static configuration, deep-merged into traefik.toml.

    Called while rendering. A change here restarts the proxy at reload.
    """


@hookspec
def hardway_traefik_dynamic(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Extra Traefik dynamic configuration, written to its own file in the watched rules
    directory. Called while rendering; a change here needs no restart.
    """


@hookspec
def hardway_post_install(settings: Settings, ctx: Context) -> None:
    """Run after files are written and before services are (re)started, at every
    ``hardway install``. Must be idempotent; act through ``ctx.system``.
    """


@hookspec
def hardway_new_user(unix_name: str, hub_name: str, admin: bool, settings: Settings) -> None:
    """Called in the hub process right after the systemd spawner created a unix user
    for a hub user (not for existing users). Return value ignored.
    """
