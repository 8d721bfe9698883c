"""spawner "systemd": each user's server is a systemd unit running as their own unix user.

Hub user ``alice`` runs as unix user ``jupyter-alice`` (created at first spawn, home
0700). Names that are not valid unix names, or too long, are shortened and get a hash
suffix; the unix user's comment field records the hub name it belongs to, and a spawn
is refused when it does not match, so two hub names can never share one unix user.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from hardway import keytypes as kt
from hardway.choices import Choice, Context
from hardway.hookspecs import hookimpl
from hardway.settings import Key, Settings

ADMIN_GROUP = "jupyterhub-admins"
MAX_UNIX_NAME = 32


def unix_name(hub_name: str, prefix: str = "jupyter-") -> str:
    """The unix user name for a hub user: ``prefix + name``, made safe and short.

    Kept as is when the result is a valid name of at most 32 characters; otherwise
    unsafe characters become ``-``, the name is cut, and 7 characters of a hash of the
    original name make it unique.
    """
    safe = re.sub(r"[^a-z0-9_-]", "-", hub_name.lower())
    name = prefix + safe
    if safe == hub_name and len(name) <= MAX_UNIX_NAME and re.fullmatch(r"[a-z_][a-z0-9_-]*", name):
        return name
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:7]
    return f"{name[:MAX_UNIX_NAME - 8].rstrip('-')}-{digest}"


class SystemdChoice(Choice):
    kind = "spawner"
    name = "systemd"
    description = "Servers run as systemd units under per-user unix accounts."

    def keys(self) -> list[Key]:
        return [
            Key("spawner.systemd.user_prefix",
                kt.Str(r"[a-z][a-z0-9_-]{0,15}", "a unix name prefix such as jupyter-"),
                "jupyter-", "Prefix of the unix accounts created for hub users."),
            Key("spawner.systemd.isolate_tmp", kt.Bool(), True,
                "Give each server its own /tmp."),
            Key("spawner.systemd.isolate_devices", kt.Bool(), True,
                "Give each server a minimal /dev."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-systemdspawner"]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        user_bin = ctx.paths.user_venv / "bin"
        return {
            "JupyterHub": {
                "spawner_class": "hardway_plugins.systemd_spawner.HardwaySystemdSpawner",
            },
            "Spawner": {"cmd": [str(user_bin / "jupyterhub-singleuser")]},
            "SystemdSpawner": {
                "isolate_tmp": settings["spawner.systemd.isolate_tmp"],
                "isolate_devices": settings["spawner.systemd.isolate_devices"],
                "disable_user_sudo": True,
                "default_shell": "/bin/bash",
                "extra_paths": [str(user_bin)],
                "username_template": "{USERNAME}",
                "unit_name_template": "{USERNAME}-singleuser",
            },
            "HardwaySystemdSpawner": {
                "user_prefix": settings["spawner.systemd.user_prefix"],
                "admin_group": ADMIN_GROUP,
                "home_base": str(ctx.paths.home),
            },
        }

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        assert ctx.system is not None
        if ctx.system.group_exists(ADMIN_GROUP):
            return []
        ctx.system.run(["groupadd", "--system", ADMIN_GROUP])
        return [f"created group {ADMIN_GROUP}"]


@hookimpl
def hardway_choices() -> list[Choice]:
    return [SystemdChoice()]
