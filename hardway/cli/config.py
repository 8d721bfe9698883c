"""`hardway config ...`: read, change, validate and apply settings."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import sys
from typing import Any

from hardway.errors import FileWriteError, UsageError
from hardway.paths import Paths
from hardway.settings import Key

MASK = "********"


def _registry() -> Any:
    from hardway.plugin.manager import Registry, make_manager

    return Registry(make_manager())


def _show_value(key: Key, value: Any) -> str:
    if key.secret and value not in (None, ""):
        return MASK
    if value is None:
        return "(not set)"
    return key.type.show(value)


def cmd_show(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.plugin.manager import load_settings

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
    from hardway.plugin.manager import load_settings

    settings = load_settings(paths, _registry())
    key = settings.decl.get(args.key)
    value = settings.values[key.name]
    print("" if value is None else key.type.show(value))
    return 0


def cmd_validate(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.plugin.manager import load_settings

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
    add_writing_verbs(verbs)



# --------------------------------------------------------------------------- writing verbs


def _edit(paths: Paths, key_names: list[str], change: Any, dry_run: bool,
          applied_here: bool = False) -> int:
    """Read config.yaml, apply ``change(doc, key)`` for each key, validate the result once,
    write atomically: several keys change together or not at all.

    ``change`` returns the message to print, or raises UsageError. Nothing is written
    when anything fails, or with --dry-run.
    """
    from hardway.apply.files import locked, write_atomic
    from hardway.settings import merge, read_drop_ins
    from hardway.settings.configfile import ConfigDoc

    registry = _registry()
    decl = registry.declarations()
    keys = [decl.get(name) for name in key_names]
    with contextlib.ExitStack() as stack:
        try:
            paths.etc.mkdir(mode=0o700, parents=True, exist_ok=True)
            stack.enter_context(locked(paths.lock_file, "" if dry_run else "config edit",
                                       print, paths.lock_holder))
        except OSError as e:
            hint = " (run it as root: sudo hardway ...)" if isinstance(e, PermissionError) else ""
            raise FileWriteError(f"cannot lock {paths.lock_file} to change "
                                 f"{paths.config_file}: {e.strerror or e}; nothing was "
                                 f"changed{hint}") from None
        doc = ConfigDoc(paths.config_file)
        messages = [change(doc, key) for key in keys]
        text = doc.dumps()
        # validate the whole result: this file as it would be, plus every drop-in
        layer = decl.flatten(doc.data, str(paths.config_file))
        settings = merge(decl, [layer, *read_drop_ins(paths.config_d, decl)])
        registry.validate(settings)
        if dry_run:
            diff = diff_text(doc.original, text, str(paths.config_file))
            print(diff or "(no change)")
            return 0
        if text != doc.original:
            try:
                write_atomic(paths.config_file, text.encode(), 0o600, 0, 0)
            except OSError as e:
                # exit 1, not 2: the input was fine, the system could not take it.
                # write_atomic renames a complete temp file into place or removes it,
                # so config.yaml is exactly as it was.
                raise FileWriteError(
                    f"cannot write {paths.config_file}: {e.strerror or e}; it was left "
                    "unchanged") from None
        for message in messages:
            if message:
                print(message)
        for key in keys:
            origin = settings.origins[key.name]
            if not origin.startswith((str(paths.config_file), "default")):
                print(f"warning: {key.name} is also set in {origin}, which comes later and "
                      f"wins; the effective value is "
                      f"{_show_value(key, settings.values[key.name])}", file=sys.stderr)
        if text != doc.original and not applied_here:
            print("apply it with: sudo hardway config reload")
    return 0


def _parse(key: Key, text: str) -> Any:
    from hardway.settings import check_secret
    from hardway.settings import keytypes as kt

    try:
        if not key.secret:
            return key.type.parse(text)
        # the rules the files follow (settings.flatten), plus: each file named is there
        return check_secret(key, text if text.startswith("file:") else key.type.parse(text),
                            readable=True)
    except kt.BadValue as e:
        raise UsageError(f"{key.name}: {e}") from None


def cmd_set(args: argparse.Namespace, paths: Paths) -> int:
    pairs = [args.key, args.value, *args.more]
    if len(pairs) % 2:
        raise UsageError(f"set: {pairs[-1]!r} has no value: give KEY VALUE pairs, e.g. "
                         "`hardway config set https.enabled true https.self_signed true`")
    values = dict(zip(pairs[::2], pairs[1::2], strict=True))

    def change(doc: Any, key: Key) -> str:
        value = _parse(key, values[key.name])
        doc.set(key.name, value)
        return f"set {key.name} = {_show_value(key, value)} in {paths.config_file}"

    return _edit(paths, list(values), change, args.dry_run)


def cmd_unset(args: argparse.Namespace, paths: Paths) -> int:
    def change(doc: Any, key: Key) -> str:
        if not doc.unset(key.name):
            return f"{key.name} was not set in {paths.config_file}; nothing to do"
        return f"unset {key.name} in {paths.config_file} (back to its default)"

    return _edit(paths, list(dict.fromkeys([args.key, *args.more])), change, args.dry_run)


def _list_key(key: Key) -> Any:
    from hardway.settings import keytypes as kt

    if not isinstance(key.type, kt.ListOf):
        raise UsageError(f"{key.name} is a {key.type.name}, not a list: use "
                         f"`hardway config set {key.name} VALUE`")
    return key.type


def cmd_add_item(args: argparse.Namespace, paths: Paths) -> int:
    def change(doc: Any, key: Key) -> str:
        t = _list_key(key)
        item = _parse_item(t, key, args.value)
        current = list(doc.get(key.name) if doc.get(key.name) is not None else key.default)
        if item in current:
            return f"{item} is already in {key.name}; nothing to do"
        doc.set(key.name, [*current, item])
        return f"added {item} to {key.name} in {paths.config_file}"

    return _edit(paths, [args.key], change, args.dry_run)


def cmd_remove_item(args: argparse.Namespace, paths: Paths) -> int:
    def change(doc: Any, key: Key) -> str:
        t = _list_key(key)
        item = _parse_item(t, key, args.value)
        current = list(doc.get(key.name) or [])
        if item not in current:
            raise UsageError(f"{item!r} is not in {key.name} in {paths.config_file} "
                             f"(it holds: {', '.join(map(str, current)) or 'nothing'})")
        current.remove(item)
        doc.set(key.name, current)
        return f"removed {item} from {key.name} in {paths.config_file}"

    return _edit(paths, [args.key], change, args.dry_run)


def _parse_item(t: Any, key: Key, text: str) -> Any:
    from hardway.settings import keytypes as kt

    try:
        return t.item.parse(text)
    except kt.BadValue as e:
        raise UsageError(f"{key.name}: item {text!r}: {e}") from None


def cmd_reload(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.apply.system import System
    from hardway.ops.reload import reload

    from . import require_root

    require_root()
    force = {args.component} if args.component else set()
    reload(paths, System(), force=force, dry_run=args.dry_run, timeout=args.timeout,
           acme_wait=args.acme_wait)
    return 0


def add_writing_verbs(verbs: Any) -> None:
    for name, func, helptext, has_value, more in (
        ("set", cmd_set, "set KEY to VALUE in config.yaml; several KEY VALUE pairs change "
                         "together", True, "KEY VALUE"),
        ("unset", cmd_unset, "remove KEYs from config.yaml (back to their defaults)", False,
         "KEY"),
        ("add-item", cmd_add_item, "add VALUE to the list KEY", True, ""),
        ("remove-item", cmd_remove_item, "remove VALUE from the list KEY", True, ""),
    ):
        v = verbs.add_parser(name, help=helptext)
        v.add_argument("key")
        if has_value:
            v.add_argument("value")
        if more:
            v.add_argument("more", nargs="*", metavar=more, help="more, applied together")
        v.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
        v.set_defaults(func=func)
    v = verbs.add_parser("reload", help="apply the settings: restart only what changed")
    v.add_argument("component", nargs="?", choices=["hub", "proxy"],
                   help="also restart this one, changed or not")
    v.add_argument("--dry-run", action="store_true", help="say what would change and restart")
    v.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the hub to answer after a restart")
    v.add_argument("--acme-wait", type=float, default=90.0,
                   help="seconds to wait for an ACME certificate after the proxy restarted "
                        "(the reload succeeds either way; this only reports)")
    v.set_defaults(func=cmd_reload)
