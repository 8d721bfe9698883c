"""Every hook hardway calls, in one module.

Plugins implement these with ``@hardway.plugin.hookimpl``; a plugin may implement any
subset. hardway calls each hook through ``hardway.plugin.manager.call_hook``: one plugin at a
time, in registration order (built-ins first, then installed entry points), and checks
every result against what the hook's docstring says it returns.

When a plugin fails (its hook raises, or returns something malformed: None where a list
or dict is required, an element of the wrong type), the command stops with an error
naming the plugin and the hook on one line, e.g.
``hardway: error: plugin 'acme' (hook hardway_hub_config) returned None; expected a dict
of {Class: {trait: value}}`` (exit status 1); a reload stops before it writes a rendered
file or restarts anything. No traceback is shown. Only where
leaving a plugin out is safe is it left out with a warning naming it instead; each hook
says which. A plugin that fails to import is an error naming it and its entry point; set
``HARDWAY_BLOCK_PLUGINS=NAME`` (entry-point name) to leave it out on purpose.

The hub process loads only the built-ins, the plugins of the chosen authenticator,
spawner and proxy, and the plugins implementing a hub-side hook
(``hardway_hub_config_object``, ``hardway_new_user``): render writes their entry-point
names into hub.json. Any other installed plugin is never imported by the hub, so a broken
one cannot stop it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from hardway.paths import Paths
    from hardway.settings import Key, Settings

    from .contract import Choice, Context, File

hookspec = pluggy.HookspecMarker("hardway")
hookimpl = pluggy.HookimplMarker("hardway")


@hookspec
def hardway_choices() -> list[Choice]:
    """Register authenticator, spawner or proxy choices.

    Called once when the plugin manager is built. Return a list of
    :class:`hardway.plugin.Choice` instances; ``auth.type``, ``spawner.type`` and
    ``proxy.type`` pick one by ``(kind, name)``. Two plugins registering the same kind
    and name is an error naming both.

    A failure (raising, or returning anything but a list of Choice instances) is an
    error naming the plugin. (The choices' own methods are checked the same way.)
    """


@hookspec
def hardway_config_keys() -> list[Key]:
    """Declare extra settings that do not belong to one choice.

    Called when settings are loaded. Return a list of :class:`hardway.settings.Key`;
    names must not clash with another plugin's. (Keys of a choice come from
    ``Choice.keys()``.) A failure (raising, or not a list of Key) is an error naming the
    plugin: leaving its keys out would reject the settings that use them as unknown.
    """


@hookspec
def hardway_hub_packages(settings: Settings) -> list[str]:
    """Extra pip requirements for the hub environment (/opt/hardway/hub).

    Called by ``hardway install`` and ``reload``; results from every plugin are merged.
    Return a list of str (``[]`` for none). A failure is an error naming the plugin: an
    environment missing a package would fail later, less clearly.
    """


@hookspec
def hardway_user_packages(settings: Settings) -> list[str]:
    """Extra pip requirements for the users' environment (/opt/hardway/user).

    Called by ``hardway install`` and ``reload``; results from every plugin are merged.
    Return a list of str (``[]`` for none). A failure is an error naming the plugin: an
    environment missing a package would fail later, less clearly.
    """


@hookspec
def hardway_apt_packages(settings: Settings) -> list[str]:
    """Extra Debian packages to install. Called by ``hardway install``; merged.

    Return a list of str (``[]`` for none). A failure is an error naming the plugin.
    """


@hookspec
def hardway_hub_config(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Contribute JupyterHub configuration as JSON-able ``{Class: {trait: value}}``.

    Called while rendering (pure: no side effects). Return a dict (``{}`` for nothing);
    a failure (raising, None, not a dict of dicts, a value that is not JSON) is an error
    naming the plugin: a hub config with a part silently missing could open the hub.

    Merge policy. hub.json is built from hardway's core config, then the chosen proxy's,
    spawner's and authenticator's ``Choice.hub_config``, then every plugin's result here
    in registration order (built-ins first). Dicts merge recursively. Two lists
    accumulate, entry by entry: ``JupyterHub.services`` and ``JupyterHub.load_roles``;
    each entry must be a dict with a unique ``name``, and a name given by two
    contributors (say your service named ``idle-culler``) is an error naming both, never
    a silent replacement. Every other value, other lists included, is replaced: the later
    contributor wins. So adding a service and its role keeps the idle culler's.
    """


@hookspec
def hardway_hub_config_object(c: Any, settings: Settings) -> None:
    """Last word on the traitlets config object ``c``, at hub start.

    Called inside jupyterhub_config.py after hub.json has been applied, for what cannot
    be expressed as JSON (callables, objects). Return value ignored. Called only in
    plugins the hub loads (all that implement it). Raising is an error naming the plugin
    (the hub does not start): a half-applied last word could leave the hub open.
    """


@hookspec
def hardway_traefik_static(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Extra Traefik static configuration, deep-merged into traefik.toml.

    Called while rendering. A change here restarts the proxy at reload. Return a dict
    with string keys (``{}`` for nothing); a failure is an error naming the plugin.
    """


@hookspec
def hardway_traefik_dynamic(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Extra Traefik dynamic configuration, written to its own file in the watched rules
    directory. Called while rendering; a change here needs no restart. Return a dict
    with string keys (``{}`` for nothing); a failure is an error naming the plugin (a
    left-out middleware may be one that protects a route).
    """


@hookspec
def hardway_files(settings: Settings, ctx: Context) -> list[File]:
    """Files this plugin owns beyond a choice's (a feature's units and configuration),
    rendered with the rest: pure, from settings and ``ctx`` only (``ctx.read`` for the
    files named by ``hardway_generated_secrets``). Return a list of
    ``hardway.plugin.File`` (``[]`` for none). A file hardway rendered before and no
    longer does is removed at reload (a unit is stopped and disabled first). A failure is
    an error naming the plugin.
    """


@hookspec
def hardway_generated_secrets(settings: Settings, paths: Paths) -> list[Path]:
    """Root-only files, each holding a random token this plugin's rendering needs (a
    service's API token). ``hardway install`` and ``config reload`` generate those that
    are missing (32 random bytes, hex, mode 0600; a name ending ``.pem``: an RSA private
    key, PKCS#8 PEM, for a signing key) before rendering, which reads them through
    ``ctx.read``. Return a list of absolute ``pathlib.Path`` under
    ``paths.secrets`` (``[]`` for none); anything else is an error naming the plugin.
    """


@hookspec
def hardway_post_install(settings: Settings, ctx: Context) -> None:
    """Run after files are written and before services are (re)started, at every
    ``hardway install`` and ``hardway config reload``. Must be idempotent; act through
    ``ctx.system``. Return value ignored. Raising is an error naming the plugin (at
    reload, the previous files are put back; a re-run retries it).
    """


@hookspec
def hardway_new_user(unix_name: str, hub_name: str, admin: bool, settings: Settings) -> None:
    """Called in the hub process right after the systemd spawner created a unix user
    for a hub user (not for existing users). Return value ignored. A plugin that raises
    is left out with a warning naming it in the hub's log, and the server still starts:
    the account exists by then, and this hook only adds to it.
    """


@hookspec
def hardway_backup_paths(settings: Settings, paths: Paths) -> list[Path]:
    """State this plugin keeps on the machine, to go into ``hardway backup`` archives.

    Called by ``hardway backup`` (and by ``hardway uninstall``, which writes a final
    backup first); results from every plugin are merged. Return a list of absolute
    ``pathlib.Path`` (files or directories; ``[]`` for none; a path that does not exist
    is skipped). ``hardway restore`` puts each back where it was, with its mode and its
    owner by name. Paths under ``paths.root`` only: the hub database, config.yaml,
    config.d, the secrets and the ACME stores are hardway's own and need no listing.
    A failure (raising, or not a list of Path) is an error naming the plugin: a backup
    silently missing a plugin's state would restore a hub that has lost it.
    """
