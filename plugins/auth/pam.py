"""auth "pam": existing unix accounts and their passwords.

Servers run as those very accounts (no ``jupyter-`` prefix, nothing created), and never
as root or a system account (uid below 1000). Who may log in with no allow list: members
of the unix groups in ``auth.pam.allowed_groups`` (default: jupyterhub-users, which
install creates), plus ``users.allowed`` and the admins.
"""

from __future__ import annotations

from typing import Any

from hardway.plugin import Choice, Context, Key, Settings, hookimpl
from hardway.plugin import keytypes as kt


class Pam(Choice):
    kind = "auth"
    name = "pam"
    description = "Existing unix users log in with their own passwords."

    def keys(self) -> list[Key]:
        return [
            Key("auth.pam.allowed_groups",
                kt.ListOf(kt.Str(r"[a-z_][a-z0-9_-]*", "a unix group name", empty=False)),
                ["jupyterhub-users"], "Unix groups whose members may log in."),
            Key("auth.pam.service", kt.Str(empty=False), "login", "PAM service to check with."),
        ]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class": "pam"},
            "PAMAuthenticator": {"service": settings["auth.pam.service"],
                                 "allowed_groups": sorted(settings["auth.pam.allowed_groups"]),
                                 "open_sessions": False},
            # the systemd spawner runs servers as the account itself
            "HardwaySystemdSpawner": {"user_prefix": "", "existing_users_only": True},
        }

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        assert ctx.system is not None
        changes = []
        for group in settings["auth.pam.allowed_groups"]:
            if not ctx.system.group_exists(group):
                ctx.system.run(["groupadd", group])
                changes.append(f"created group {group}")
        return changes


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Pam()]
