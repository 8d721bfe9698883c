"""auth "native": people sign up at /hub/signup; an admin approves them at /hub/authorize.

Who may log in with no allow list: every user an admin has approved (admins always).
With ``auth.native.open_signup`` true, signing up is enough. Approval is the gate, so
hardway sets JupyterHub's allow_all for this authenticator.
"""

from __future__ import annotations

from typing import Any

from hardway.plugin import Choice, Context, Key, Settings, allow_all_unless_listed, hookimpl
from hardway.plugin import keytypes as kt


class Native(Choice):
    kind = "auth"
    name = "native"
    description = "Self-service signup with admin approval (nativeauthenticator)."

    def keys(self) -> list[Key]:
        return [
            Key("auth.native.open_signup", kt.Bool(), False,
                "Let new users in without an admin's approval."),
            Key("auth.native.minimum_password_length", kt.Int(1, 1024), 8,
                "Shortest password accepted at signup."),
            Key("auth.native.check_common_password", kt.Bool(), True,
                "Refuse the most common passwords at signup."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-nativeauthenticator"]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class":
                           "hardway_plugins.auth.native_compat.HardwayNativeAuthenticator"},
            "NativeAuthenticator": {
                "open_signup": settings["auth.native.open_signup"],
                "minimum_password_length": settings["auth.native.minimum_password_length"],
                "check_common_password": settings["auth.native.check_common_password"],
            },
            "Authenticator": allow_all_unless_listed(settings),
        }


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Native()]
