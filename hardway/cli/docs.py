"""Reference pages generated from the declarations: docs/config.md and docs/hooks.md.

``python -m hardway.cli.docs`` rewrites them; a test fails when they are stale.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from hardway.plugin import hookspecs
from hardway.plugin.contract import KINDS
from hardway.plugin.manager import Registry, make_manager

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _default(key) -> str:
    if key.default is None:
        return "(not set)"
    if key.default in ("", [], {}):
        return "(empty)"
    return f"`{key.type.show(key.default)}`"


def config_md(registry: Registry | None = None) -> str:
    registry = registry or Registry(make_manager(load_entrypoints=False))
    lines = [
        "# Settings reference",
        "",
        "Generated from the key declarations by `python -m hardway.cli.docs`; do not edit.",
        "",
        "Set a key with `sudo hardway config set KEY VALUE`, then apply it with",
        "`sudo hardway config reload`. Layers, lowest first: these defaults, plugin",
        "defaults, `/etc/hardway/config.yaml`, `/etc/hardway/config.d/*.yaml` (name order).",
        "`hardway config show --origin` tells which layer set each value.",
        "",
    ]
    section = None
    for key in registry.declarations():
        top = key.name.split(".")[0]
        if top != section:
            section = top
            lines += [f"## {top}", ""]
        flags = []
        if key.secret:
            flags.append("secret: masked in `show`, may be given as `file:PATH`")
        if key.required:
            flags.append("required when this plugin is chosen")
        owner = "" if key.owner == "hardway" else f" (plugin `{key.owner}`)"
        lines += [f"### `{key.name}`{owner}", "", key.description, "",
                  f"- type: {key.type.name}; accepted: {key.type.accepted}",
                  f"- default: {_default(key)}"]
        lines += [f"- {f}" for f in flags]
        lines.append("")
    lines += ["## Installed choices", ""]
    for kind in KINDS:
        for name in registry.names(kind):
            choice = registry.choices[kind][name]
            lines.append(f"- `{kind}.type: {name}`: {choice.description}")
    return "\n".join(lines) + "\n"


def hooks_md() -> str:
    lines = ["# Plugin hooks", "",
             "Generated from `hardway/plugin/hookspecs.py` by `python -m hardway.cli.docs`;",
             "do not edit. A plugin is a module or package with a `hardway` entry point;",
             "implement any of these with `@hardway.plugin.hookimpl`. Choices",
             "(authenticators, spawners, proxies) subclass `hardway.plugin.Choice` and are",
             "returned from `hardway_choices`. `hardway.plugin` is the API for plugin",
             "authors; see [architecture.md](architecture.md) for where a plugin fits.", ""]
    lines += ["## How hooks are called, and what a failing plugin does", "",
              inspect.cleandoc(hookspecs.__doc__ or "").split("\n\n", 1)[1], ""]
    for name, fn in hook_functions():
        sig = str(inspect.signature(fn)).replace("'", "")
        lines += [f"## `{name}{sig}`", "", inspect.cleandoc(fn.__doc__ or ""), ""]
    from hardway import testing

    lines += ["## Testing a plugin: `hardway.testing`", "",
              inspect.cleandoc(testing.__doc__ or ""), ""]
    for name in testing.__all__:
        fn = getattr(testing, name)
        sig = str(inspect.signature(fn)).replace("'", "")
        lines += [f"### `{name}{sig}`", "", inspect.cleandoc(fn.__doc__ or ""), ""]
    lines += ["A complete example, packaged with its entry point and tested with this kit: "
              "`tests/sample_plugin/` and `tests/test_sample_plugin.py`.", ""]
    return "\n".join(lines)


def hook_functions() -> list[tuple[str, object]]:
    return sorted((n, f) for n, f in vars(hookspecs).items()
                  if n.startswith("hardway_") and callable(f))


PAGES = {"config.md": config_md, "hooks.md": hooks_md}


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    for name, make in PAGES.items():
        (DOCS / name).write_text(make())
        print(f"wrote {DOCS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
