"""A sample third-party hardway plugin: declares one key and adds one hub service (an
external service: the hub gives it a name and a role, nothing to run) with a role that
may only read the hub's version. It sits next to the idle culler, never in its place."""

from __future__ import annotations

from typing import Any

from hardway.plugin import Key, hookimpl
from hardway.plugin import keytypes as kt

SERVICE = "sample-reporter"


@hookimpl
def hardway_config_keys() -> list[Key]:
    return [Key("services.sample.enabled", kt.Bool(), True,
                "Register the sample plugin's hub service.", owner="sample")]


@hookimpl
def hardway_hub_config(settings: Any, ctx: Any) -> dict[str, Any]:
    if not settings["services.sample.enabled"]:
        return {}
    return {"JupyterHub": {
        "services": [{"name": SERVICE, "display": False}],
        "load_roles": [{"name": SERVICE, "description": "read the hub's version",
                        "scopes": ["read:hub"], "services": [SERVICE]}],
    }}
