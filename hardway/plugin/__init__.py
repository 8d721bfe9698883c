"""The API for plugin authors: everything a plugin needs to declare keys, offer a choice
(an authenticator, spawner or proxy) and implement hooks.

A plugin imports from here, never from the operations or the CLI (an import-linter
contract checks the built-in plugins)::

    from hardway.plugin import Choice, Context, File, Key, Settings, hookimpl, keytypes

The contract a choice fulfils is in :mod:`hardway.plugin.contract`, every hook in
:mod:`hardway.plugin.hookspecs` (docs/hooks.md), and how plugins are found and combined
in :mod:`hardway.plugin.manager`. docs/architecture.md says where a plugin fits.
"""

from __future__ import annotations

from hardway.errors import ConfigError
from hardway.paths import Paths
from hardway.settings import Key, Settings, keytypes, resolve_secret

from .contract import (
    KINDS,
    Choice,
    Context,
    File,
    Health,
    allow_all_unless_listed,
    check_url,
    deep_merge,
    hub_url,
)
from .hookspecs import hookimpl

__all__ = [
    "KINDS",
    "Choice",
    "ConfigError",
    "Context",
    "File",
    "Health",
    "Key",
    "Paths",
    "Settings",
    "allow_all_unless_listed",
    "check_url",
    "deep_merge",
    "hookimpl",
    "hub_url",
    "keytypes",
    "resolve_secret",
]
