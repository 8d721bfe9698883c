"""`hardway config ...`: read, change, validate and apply settings."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from .paths import Paths
from .settings import Key

MASK = "********"


def _registry() -> Any:
    from .plugins import Registry, make_manager

    return Registry(make_manager())


def _show_value(key: Key, value: Any) -> str:
    if key.secret and value not in (None, ""):
        return MASK
    if value is None:
        return "(not set)"
    return key.type.show(value)


def cmd_show(args: argparse.Namespace, paths: Paths) -> int:
    from .plugins import load_settings

    settings = load_settings(paths, _registry())
    names = [k.name for k in settings.decl]
    if args.key:
        if args.key in settings.decl:
            names = [args.key]
        else:
            names = [n for n in names if n.startswith(args.key + ".")]
            if not names:
                settings.decl.get(args.key)  # raises the "unknown key" message
    for name in names:
        key = settings.decl.keys[name]
        line = f"{name} = {_show_value(key, settings.values[name])}"
        if args.origin:
            line += f"    [{settings.origins[name]}]"
        print(line)
    return 0


def cmd_get(args: argparse.Namespace, paths: Paths) -> int:
    from .plugins import load_settings

    settings = load_settings(paths, _registry())
    key = settings.decl.get(args.key)
    value = settings.values[key.name]
    print("" if value is None else key.type.show(value))
    return 0


def cmd_validate(args: argparse.Namespace, paths: Paths) -> int:
    from .plugins import load_settings

    load_settings(paths, _registry())
    print("hardway: settings are valid")
    return 0


def diff_text(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"{name} (now)", f"{name} (after)"))


def add_config_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="show, change and apply settings")
    verbs = p.add_subparsers(dest="verb", required=True, parser_class=type(p))

    v = verbs.add_parser("show", help="effective settings (secrets masked)")
    v.add_argument("key", nargs="?", help="a key or a section such as auth")
    v.add_argument("--origin", action="store_true", help="say which layer set each value")
    v.set_defaults(func=cmd_show)

    v = verbs.add_parser("get", help="one value, plain, for scripts")
    v.add_argument("key")
    v.set_defaults(func=cmd_get)

    v = verbs.add_parser("validate", help="check every layer and the chosen plugins")
    v.set_defaults(func=cmd_validate)

