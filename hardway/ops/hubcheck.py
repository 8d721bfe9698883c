"""Validate a rendered hub.json before the hub is restarted with it.

Runs in the hub environment (``python -m hardway.ops.hubcheck FILE``): imports the
authenticator, spawner and proxy classes, and checks that every configured trait exists
on the class it is set for and that its value passes the trait's own validation.
Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _import(dotted: str) -> Any:
    from traitlets.utils.importstring import import_item

    return import_item(dotted)


def _resolve(name: str, group: str) -> Any:
    if "." in name:
        return _import(name)
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    raise ImportError(f"no {group} entry point named {name!r}")


def _stub() -> Any:
    """A bare HasTraits stands in for the instance trait validation expects."""
    from traitlets import HasTraits

    return HasTraits()


def problems(config: dict[str, Any]) -> list[str]:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.proxy import Proxy
    from jupyterhub.spawner import Spawner
    from traitlets import TraitError

    out: list[str] = []
    stub = _stub()
    hub = config.get("JupyterHub", {})
    classes: dict[str, Any] = {"JupyterHub": JupyterHub, "Authenticator": Authenticator,
                               "Spawner": Spawner, "Proxy": Proxy}
    for trait, group in (("authenticator_class", "jupyterhub.authenticators"),
                         ("spawner_class", "jupyterhub.spawners"),
                         ("proxy_class", "jupyterhub.proxies")):
        if trait in hub:
            try:
                cls = _resolve(hub[trait], group)
            except Exception as e:  # any import failure is a problem to report
                out.append(f"JupyterHub.{trait} = {hub[trait]!r} cannot be imported: {e}")
                continue
            for klass in cls.mro():
                if hasattr(klass, "class_traits"):
                    classes.setdefault(klass.__name__, klass)
    for section, values in config.items():
        cls = classes.get(section)
        if cls is None:
            out.append(f"{section}: no configurable class of that name is in use")
            continue
        traits = cls.class_traits(config=True)
        for name, value in values.items():
            if name not in traits:
                out.append(f"{section}.{name}: {section} has no such setting")
                continue
            try:
                traits[name].validate(stub, value)
            except (TraitError, TypeError, ValueError) as e:
                out.append(f"{section}.{name} = {value!r}: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = json.loads(open(argv[0]).read())["config"]
    found = problems(config)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
