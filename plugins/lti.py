"""auth "lti11" and "lti13": launches from an LMS (Canvas, Moodle, Blackboard...).

Who may log in with no allow list: everyone the LMS launches with a valid signature (the
course roster is the gate), so hardway sets allow_all for these. Usernames come from the
launch (``username_key``) and stay strings, numeric LMS ids included. JupyterHub refuses to
run inside an iframe: configure the LMS to open the tool in a new window.
`sudo hardway lti` prints what the LMS admin needs.
"""

from __future__ import annotations

from typing import Any

from hardway import keytypes as kt
from hardway.choices import Choice, Context, allow_all_unless_listed
from hardway.errors import ConfigError
from hardway.hookspecs import hookimpl
from hardway.settings import Key, Settings, resolve_secret


class Lti11(Choice):
    kind = "auth"
    name = "lti11"
    description = "LTI 1.1 launches signed with a consumer key and secret (Canvas)."

    def keys(self) -> list[Key]:
        return [
            Key("auth.lti11.consumers", kt.MapOf(kt.Str(empty=False)), {},
                "Consumer keys and their secrets, KEY=SECRET.", secret=True, required=True),
            Key("auth.lti11.username_key", kt.Str(empty=False), "custom_canvas_user_id",
                "Launch parameter that becomes the username (Canvas: custom_canvas_user_id; "
                "Moodle: user_id or lis_person_sourcedid)."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-ltiauthenticator"]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        consumers = {k: resolve_secret(v) for k, v in settings["auth.lti11.consumers"].items()}
        return {
            "JupyterHub": {"authenticator_class": "ltiauthenticator.lti11.auth.LTI11Authenticator"},
            "LTI11Authenticator": {"consumers": consumers,
                                   "username_key": settings["auth.lti11.username_key"]},
            "Authenticator": allow_all_unless_listed(settings),
        }


class Lti13(Choice):
    kind = "auth"
    name = "lti13"
    description = ("LTI 1.3 launches: OIDC login from the platform, id_token checked "
                   "against its JWKS.")

    def keys(self) -> list[Key]:
        return [
            Key("auth.lti13.issuer", kt.Str(empty=False), "",
                "The platform's issuer (Canvas: https://canvas.instructure.com).", required=True),
            Key("auth.lti13.client_id", kt.ListOf(kt.Str(empty=False)), [],
                "Client id(s) the platform gave this tool; kept as text.", required=True),
            Key("auth.lti13.authorize_url", kt.Url(), "",
                "The platform's OIDC authorization endpoint.", required=True),
            Key("auth.lti13.jwks_url", kt.Url(), "",
                "The platform's JWKS URL; id_token signatures are checked against it.",
                required=True),
            Key("auth.lti13.username_key", kt.Str(empty=False), "email",
                "id_token claim that becomes the username."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-ltiauthenticator"]

    def validate(self, settings: Settings) -> None:
        for key in ("auth.lti13.authorize_url", "auth.lti13.jwks_url"):
            value = settings[key]
            if value.startswith("http://") and not value.startswith(
                    ("http://127.0.0.1", "http://localhost")):
                raise ConfigError(f"{key}: {value!r} must use https:// (the platform's keys "
                                  "and logins must not travel in clear text)")

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class":
                           "hardway_plugins.lti13_checks.HardwayLTI13Authenticator"},
            "LTI13Authenticator": {
                "issuer": settings["auth.lti13.issuer"],
                "client_id": sorted(settings["auth.lti13.client_id"]),
                "authorize_url": settings["auth.lti13.authorize_url"],
                "jwks_endpoint": settings["auth.lti13.jwks_url"],
                "username_key": settings["auth.lti13.username_key"],
            },
            "Authenticator": allow_all_unless_listed(settings),
        }


def lms_instructions(settings: Settings) -> str:
    """What the LMS admin must paste, for the chosen LTI version."""
    public = settings["public_url"]
    if not public:
        raise ConfigError("public_url is not set: the LMS needs the hub's address, e.g. "
                          "`hardway config set public_url https://hub.example.edu/`")
    base = public.rstrip("/") + "/hub"
    if settings["auth.type"] == "lti11":
        keys = ", ".join(sorted(settings["auth.lti11.consumers"])) or "(none set)"
        return (f"LTI 1.1 (Canvas: Settings > Apps > Add App > By URL)\n"
                f"  launch URL:    {base}/lti/launch\n"
                f"  config XML:    {base}/lti11/config\n"
                f"  consumer keys: {keys} (the secrets are in auth.lti11.consumers)\n"
                f"  open in a new window: JupyterHub refuses to run inside an iframe\n")
    if settings["auth.type"] == "lti13":
        return (f"LTI 1.3 (Canvas: Developer Keys > + LTI Key; Moodle: External tool > "
                f"Configure a tool manually)\n"
                f"  login initiation URL: {base}/lti13/oauth_login\n"
                f"  redirect URI:         {base}/lti13/oauth_callback\n"
                f"  JSON configuration:   {base}/lti13/config\n"
                f"  placement: open in a new window (Canvas: windowTarget _blank)\n")
    raise ConfigError(f"auth.type is {settings['auth.type']!r}, not lti11 or lti13")


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Lti11(), Lti13()]
