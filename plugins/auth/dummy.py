"""auth "dummy": one shared password for every name. For demos and tests only.

It refuses to be chosen unless ``auth.dummy.allow_insecure`` is true, and then puts a
warning on every hub page. Who may log in with no allow list: any name, with the shared
password.
"""

from __future__ import annotations

from typing import Any

from hardway.plugin import (
    Choice,
    ConfigError,
    Context,
    Key,
    Settings,
    allow_all_unless_listed,
    hookimpl,
)
from hardway.plugin import keytypes as kt

WARNING = ("This hub uses the dummy authenticator: anyone who knows one shared password can "
           "log in as anyone. Not for real users.")


class Dummy(Choice):
    kind = "auth"
    name = "dummy"
    description = "One shared password for every name (demos and tests only)."

    def keys(self) -> list[Key]:
        return [
            Key("auth.dummy.password", kt.Str(empty=False), "", "The shared password.",
                secret=True, required=True),
            Key("auth.dummy.allow_insecure", kt.Bool(), False,
                "Must be true to use the dummy authenticator at all."),
        ]

    def validate(self, settings: Settings) -> None:
        if not settings["auth.dummy.allow_insecure"]:
            raise ConfigError("auth.type dummy lets anyone in with one shared password: set "
                              "auth.dummy.allow_insecure true if that is really what you want")

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        auth: dict[str, Any] = {"password": ctx.secret(settings["auth.dummy.password"])}
        return {
            "JupyterHub": {"authenticator_class": "dummy",
                           "template_vars": {"announcement": WARNING}},
            "DummyAuthenticator": auth,
            "Authenticator": allow_all_unless_listed(settings),
        }


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Dummy()]
