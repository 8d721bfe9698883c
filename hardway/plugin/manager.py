"""Building the plugin manager and the registry of choices."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Collection, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from hardway import tls
from hardway.errors import ConfigError, HardwayError, PluginError
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
    "hardway_plugins.spawner.docker",
    "hardway_plugins.proxy.traefik",
    "hardway_plugins.services.cull",
    "hardway_plugins.services.database",
    "hardway_plugins.courses.courses",
)

ENTRY_POINT_GROUP = "hardway"


def make_manager(load_entrypoints: bool | Collection[str] = True) -> pluggy.PluginManager:
    """A fresh plugin manager: built-ins, then installed ``hardway`` entry points.

    ``load_entrypoints``: True loads every installed entry point, False none, a collection
    of entry-point names only those (the hub loads the names render wrote into hub.json, so
    a broken plugin it does not need is never even imported there).
    A plugin that fails to import or to register is a :class:`PluginError` naming it.
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
    if load_entrypoints is True:
        load_entry_points(pm)
    elif load_entrypoints:
        load_entry_points(pm, only=set(load_entrypoints))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"plugin {pm.get_name(e.plugin)!r}: {_one_line(e)}") from None
    if os.environ.get("HARDWAY_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    return pm


def entry_point_text(ep: metadata.EntryPoint) -> str:
    return f"entry point {ENTRY_POINT_GROUP}: {ep.name} = {ep.value}"


def load_entry_points(pm: pluggy.PluginManager, only: set[str] | None = None) -> list[str]:
    """Import and register installed ``hardway`` entry points (each under its entry-point
    name, as pluggy would); ``only``: just these names, each of which must be installed.
    Returns the names registered."""
    done: list[str] = []
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen or (only is not None and ep.name not in only):
            continue  # the same distribution on sys.path twice: the first one found
        seen.add(ep.name)
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as e:  # anything a plugin's import may raise
            raise PluginError(
                f"plugin {ep.name!r} ({entry_point_text(ep)}) failed to import: "
                f"{_one_line(e)}{_where(e)}; uninstall it from the hub environment, or "
                f"leave it out with HARDWAY_BLOCK_PLUGINS={ep.name}") from None
        try:
            pm.register(plugin, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as e:
            raise PluginError(f"plugin {ep.name!r} ({entry_point_text(ep)}) cannot be "
                              f"registered: {_one_line(e)}") from None
        done.append(ep.name)
    missing = sorted((only or set()) - seen)
    if missing:
        raise PluginError(
            f"the hub needs plugin(s) {', '.join(repr(m) for m in missing)} (named in "
            "hub.json when it was rendered), but no such entry point is installed in the "
            f"group {ENTRY_POINT_GROUP!r}; reinstall the plugin or run `hardway config reload`")
    return done


def entry_point_names(pm: pluggy.PluginManager) -> set[str]:
    """The registered plugins that came from entry points (not built-ins, not tests')."""
    installed = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return {name for name, _ in pm.list_name_plugin()
            if name in installed and name not in DEFAULT_PLUGINS}


# ---------------------------------------------------------------------------------------
# Calling hooks: one plugin at a time, every result checked, the culprit named.


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a hook must return: ``check(result)`` gives a problem or None."""

    describe: str
    check: Callable[[Any], str | None]


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename}:{f.lineno})"


def _list_of(kind: type | tuple[type, ...], what: str) -> Expect:
    def check(value: Any) -> str | None:
        if not isinstance(value, list | tuple):
            return ""
        bad = [v for v in value if not isinstance(v, kind)]
        return f" (element {_short(bad[0], 40)} is not {what})" if bad else None
    return Expect(f"a list of {what}", check)


def _json_dict(value: Any) -> str | None:
    if not isinstance(value, dict):
        return ""
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        return f" (key {bad[0]!r} is not a string)"
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        return f" (not JSON-able: {_one_line(e)})"
    return None


def _hub_config(value: Any) -> str | None:
    problem = _json_dict(value)
    if problem is not None:
        return problem
    for cls, traits in value.items():
        if not isinstance(traits, dict):
            return f" ({cls}: {_short(traits, 40)} is not a dict of traits)"
        for trait in traits:
            if not isinstance(trait, str):
                return f" ({cls}: trait name {trait!r} is not a string)"
    return None


def _anything(value: Any) -> str | None:
    return None


LIST_OF_STR = _list_of(str, "str")
IGNORED = Expect("(return value ignored)", _anything)
TRAEFIK = Expect("a dict of Traefik configuration (string keys, JSON/TOML values)", _json_dict)


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a hook's implementations are checked. ``skip``: a failing plugin is left out
    with a warning naming it, instead of failing the whole call (only where leaving it out
    is safe; see each hook's docstring in hookspecs.py)."""

    expect: Expect
    skip: bool = False


def _policies() -> dict[str, Policy]:
    from hardway.settings import Key

    from .contract import File

    return {
        "hardway_choices": Policy(_list_of(Choice, "hardway.plugin.Choice instances")),
        "hardway_config_keys": Policy(_list_of(Key, "hardway.settings.Key instances")),
        "hardway_hub_packages": Policy(LIST_OF_STR),
        "hardway_user_packages": Policy(LIST_OF_STR),
        "hardway_apt_packages": Policy(LIST_OF_STR),
        "hardway_hub_config": Policy(Expect("a dict of {Class: {trait: value}}", _hub_config)),
        "hardway_hub_config_object": Policy(IGNORED),
        "hardway_traefik_static": Policy(TRAEFIK),
        "hardway_traefik_dynamic": Policy(TRAEFIK),
        "hardway_post_install": Policy(IGNORED),
        "hardway_new_user": Policy(IGNORED, skip=True),
        "hardway_backup_paths": Policy(_list_of(Path, "pathlib.Path objects")),
        "hardway_files": Policy(_list_of(File, "hardway.plugin.File instances")),
        "hardway_generated_secrets": Policy(_list_of(Path, "pathlib.Path objects")),
    }


#: every hook's checks, by hook name (a test keeps this and hookspecs.py in step)
POLICIES = _policies()


def _choice_methods() -> dict[str, Expect]:
    from hardway.settings import Key

    from .contract import File, Health

    return {
        "keys": _list_of(Key, "hardway.settings.Key instances"),
        "validate": IGNORED,
        "hub_packages": LIST_OF_STR,
        "user_packages": LIST_OF_STR,
        "apt_packages": LIST_OF_STR,
        "inputs": _list_of(Path, "pathlib.Path objects"),
        "render": _list_of(File, "hardway.plugin.File instances"),
        "hub_config": POLICIES["hardway_hub_config"].expect,
        "install": LIST_OF_STR,
        "post_install": LIST_OF_STR,
        "user_environment_ready": LIST_OF_STR,
        "health": _list_of(Health, "hardway.plugin.Health instances"),
    }


#: what each Choice method must return, checked by :meth:`Registry.call`
CHOICE_METHODS = _choice_methods()


def _warn(message: str) -> None:
    print(f"hardway: warning: {message}", file=sys.stderr)


def call_hook(pm: pluggy.PluginManager, hook: str, *, warn: Callable[[str], None] = _warn,
              **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook``, one plugin at a time, in registration order
    (built-ins first, then entry points): ``[(plugin_name, result), ...]``.

    Each result is checked against the hook's :data:`POLICIES` entry. A plugin that raises
    or returns something malformed is a :class:`PluginError` naming the plugin and the
    hook, on one line (a HardwayError the plugin raises itself, say a ConfigError naming
    a key, is its own message for the person and goes through as it is); for a hook
    whose policy says ``skip`` it is left out instead, and
    ``warn`` gets that line. Use this instead of ``pm.hook.NAME(...)`` everywhere.
    """
    policy = POLICIES[hook]
    trace = bool(os.environ.get("HARDWAY_TRACE_PLUGINS"))
    out: list[tuple[str, Any]] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():  # registration order
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue  # hardway's hooks take no wrappers
        name = impl.plugin_name
        try:
            result = impl.function(*(kwargs[a] for a in impl.argnames))
        except HardwayError as e:  # the plugin's own message for a person (a bad setting)
            if not policy.skip:
                raise
            message = f"plugin {name!r} (hook {hook}): {e}"
        except Exception as e:  # whatever a plugin raises is named, never a traceback
            message = f"plugin {name!r} (hook {hook}) raised {_one_line(e)}{_where(e)}"
        else:
            problem = policy.expect.check(result)
            if problem is None:
                if trace:
                    print(f"hardway: {hook} [{name}] -> {_short(result)}", file=sys.stderr)
                out.append((name, result))
                continue
            message = (f"plugin {name!r} (hook {hook}) returned {_short(result)}; "
                       f"expected {policy.expect.describe}{problem}")
        if not policy.skip:
            raise PluginError(message)
        warn(f"{message}; left out")
    return out


def results(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[Any]:
    """Just the results of :func:`call_hook`, in registration order."""
    return [r for _, r in call_hook(pm, hook, **kwargs)]


class Registry:
    """Choices by kind and name, plus every declared key."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.choices: dict[str, dict[str, Choice]] = {k: {} for k in KINDS}
        owners: dict[tuple[str, str], str] = {}
        # in registration order (built-ins first), so a clash names the newcomer last
        for plugin, result in call_hook(pm, "hardway_choices"):
            for choice in result:
                key = (getattr(choice, "kind", None), getattr(choice, "name", None))
                if not all(isinstance(k, str) for k in key):
                    raise PluginError(f"plugin {plugin!r} (hook hardway_choices) returned "
                                      f"{_short(choice)}, which has no kind or name; a Choice "
                                      "subclass sets both as class attributes")
                if choice.kind not in KINDS:
                    raise HardwayError(f"plugin {plugin} registers a choice of unknown kind "
                                       f"{choice.kind!r}; kinds are {', '.join(KINDS)}")
                if key in owners:
                    raise HardwayError(f"{choice.kind} {choice.name!r} is registered twice: "
                                       f"by {owners[key]} and by {plugin}")
                owners[key] = plugin
                self.choices[choice.kind][choice.name] = choice
        self.owners = owners

    def call(self, choice: Choice, method: str, *args: Any) -> Any:
        """``choice.METHOD(*args)``, checked like a hook (:data:`CHOICE_METHODS`): a choice
        that raises (other than a HardwayError of its own) or returns something malformed
        is a PluginError naming its plugin, the choice and the method."""
        owner = self.owners.get((choice.kind, choice.name), "?")
        where = f"plugin {owner!r} ({choice.kind} {choice.name!r}, Choice.{method})"
        try:
            result = getattr(choice, method)(*args)
        except HardwayError:
            raise
        except Exception as e:  # whatever a plugin raises is named, never a traceback
            raise PluginError(f"{where} raised {_one_line(e)}{_where(e)}") from None
        expect = CHOICE_METHODS[method]
        problem = expect.check(result)
        if problem is not None:
            raise PluginError(f"{where} returned {_short(result)}; expected "
                              f"{expect.describe}{problem}")
        return result

    def keys(self) -> list[Key]:
        keys = core_keys()
        for kind in KINDS:
            for name, choice in self.choices[kind].items():
                owner = self.owners[(kind, name)]
                for key in self.call(choice, "keys"):
                    if not key.name.startswith(choice.prefix() + "."):
                        raise HardwayError(f"plugin {owner} declares {key.name}, outside "
                                           f"its prefix {choice.prefix()}.")
                    keys.append(_owned(key, name))
        for result in results(self.pm, "hardway_config_keys"):
            keys.extend(result)
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
            for key in self.call(choice, "keys"):
                if key.required and settings[key.name] in (None, "", [], {}):
                    raise ConfigError(f"{key.name} is required when {choice.kind}.type is "
                                      f"{choice.name}: {key.description}")
            self.call(choice, "validate", settings)


def _owned(key: Key, owner: str) -> Key:
    import dataclasses

    return dataclasses.replace(key, owner=owner)


def load_settings(paths: Paths, registry: Registry,
                  extra_layers: Iterable[Layer] = ()) -> Settings:
    """Read every layer, merge and validate: the settings every command works from."""
    decl = registry.declarations()
    layers = read_layers(paths.config_file, paths.config_d, decl)
    settings = merge(decl, [*layers, *extra_layers])
    registry.validate(settings)
    return settings

