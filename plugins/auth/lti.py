"""auth "lti11" and "lti13": launches from an LMS (Canvas, Moodle, Blackboard...).

Who may log in with no allow list: everyone the LMS launches with a valid signature (the
course roster is the gate), so hardway sets allow_all for these. Usernames come from the
launch (``username_key``) and stay strings, numeric LMS ids included. JupyterHub refuses to
run inside an iframe: configure the LMS to open the tool in a new window.
`sudo hardway lti` prints what the LMS admin needs.

Both run as hardway's subclasses (``hardway_plugins.auth.lti_checks``): each launch is accepted
once, remembered in a root-only SQLite file in the hub's state directory, so a captured
launch replayed after a hub restart is refused too; LTI 1.3 may be limited to the
platform's deployments the admin registered (``auth.lti13.deployment_ids``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardway.plugin import (
    Choice,
    ConfigError,
    Context,
    Key,
    Paths,
    Settings,
    allow_all_unless_listed,
    hookimpl,
    resolve_secret,
)
from hardway.plugin import keytypes as kt

from .lti_grades import GRADES_DB, tool_jwks

NONCE_DB = "lti-nonces.sqlite"  # in paths.hub_dir (root-only): used nonces, both versions


def nonce_db_path(ctx: Context) -> str:
    return str(ctx.paths.hub_dir / NONCE_DB)


def grades_db_path(paths: Paths) -> Path:
    return paths.hub_dir / GRADES_DB


def tool_key_file(paths: Paths) -> Path:
    """The LTI 1.3 tool's own signing key (grades: the client assertion of its token
    requests); the LMS reads its public half at /hub/lti13/jwks."""
    return paths.secrets / "lti13-tool-key.pem"


def consumers_declared(settings: Settings) -> dict[str, str]:
    """auth.lti11.consumers as declared (secrets possibly ``file:/PATH``), or ConfigError
    when it is not a mapping: a ``file:`` reference cannot stand for the whole key."""
    value = settings["auth.lti11.consumers"]
    if not isinstance(value, dict):
        raise ConfigError(
            f"auth.lti11.consumers: expected a mapping of consumer keys to secrets, got "
            f"{'a file: reference' if str(value).startswith('file:') else repr(value)}; a "
            "secret may come from a file per consumer: `hardway config set "
            "auth.lti11.consumers canvas-key=file:/etc/hardway/canvas-secret`")
    for name, secret in value.items():
        if isinstance(secret, str) and secret.startswith("file:") \
                and not secret.startswith("file:/"):
            raise ConfigError(f"auth.lti11.consumers: {name}: file: must be followed by an "
                              "absolute path, e.g. file:/etc/hardway/canvas-secret")
    return value


def consumer_secrets(settings: Settings,
                     resolve: Callable[[Any], Any] = resolve_secret) -> dict[str, str]:
    """Consumer key -> secret, ``file:/PATH`` secrets read from their files (while
    rendering: ``ctx.secret``, which takes what was read beforehand)."""
    out = {}
    for name, value in consumers_declared(settings).items():
        try:
            secret = resolve(value)
        except ConfigError as e:
            raise ConfigError(f"auth.lti11.consumers: {name}: {e}") from None
        if not secret:
            raise ConfigError(f"auth.lti11.consumers: the secret of {name} is empty "
                              f"({value}): anyone could sign launches with it")
        out[name] = secret
    return out


class Lti11(Choice):
    kind = "auth"
    name = "lti11"
    description = "LTI 1.1 launches signed with a consumer key and secret (Canvas)."

    def keys(self) -> list[Key]:
        return [
            Key("auth.lti11.consumers", kt.MapOf(kt.Str(empty=False)), {},
                "Consumer keys and their secrets, KEY=SECRET (several: K1=S1,K2=S2). A "
                "secret may live in a root-only file: KEY=file:/ABSOLUTE/PATH, read at "
                "reload; the whole key cannot be one file: reference.",
                secret=True, required=True),
            Key("auth.lti11.username_key", kt.Str(empty=False), "custom_canvas_user_id",
                "Launch parameter that becomes the username (Canvas: custom_canvas_user_id; "
                "Moodle: user_id or lis_person_sourcedid)."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-ltiauthenticator"]

    def validate(self, settings: Settings) -> None:
        consumers_declared(settings)

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class":
                           "hardway_plugins.auth.lti_checks.HardwayLTI11Authenticator"},
            "LTI11Authenticator": {"consumers": consumer_secrets(settings, ctx.secret),
                                   "username_key": settings["auth.lti11.username_key"]},
            "HardwayLTI11Authenticator": {"nonce_db_path": nonce_db_path(ctx),
                                          "grades_db_path": str(grades_db_path(ctx.paths))},
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
            Key("auth.lti13.deployment_ids", kt.ListOf(kt.Str(empty=False)), [],
                "Deployment ids of this tool on the platform (the id_token's deployment_id "
                "claim; Canvas shows it under the app's Deployment Id) allowed to launch; "
                "kept as text. Empty: any deployment of the platform."),
            Key("auth.lti13.token_url", kt.Url(), "",
                "The platform's OAuth 2 token endpoint (Canvas: https://DOMAIN/login/"
                "oauth2/token; Moodle: https://SITE/mod/lti/token.php): where the tool "
                "gets its token to send grades (hardway course grades). Empty: no grades "
                "are sent."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-ltiauthenticator"]

    def validate(self, settings: Settings) -> None:
        for key in ("auth.lti13.authorize_url", "auth.lti13.jwks_url",
                    "auth.lti13.token_url"):
            value = settings[key]
            if value.startswith("http://") and not value.startswith(
                    ("http://127.0.0.1", "http://localhost")):
                raise ConfigError(f"{key}: {value!r} must use https:// (the platform's keys "
                                  "and logins must not travel in clear text)")

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class":
                           "hardway_plugins.auth.lti_checks.HardwayLTI13Authenticator"},
            "LTI13Authenticator": {
                "issuer": settings["auth.lti13.issuer"],
                "client_id": sorted(settings["auth.lti13.client_id"]),
                "authorize_url": settings["auth.lti13.authorize_url"],
                "jwks_endpoint": settings["auth.lti13.jwks_url"],
                "username_key": settings["auth.lti13.username_key"],
            },
            "HardwayLTI13Authenticator": {
                "nonce_db_path": nonce_db_path(ctx),
                "grades_db_path": str(grades_db_path(ctx.paths)),
                "deployment_ids": sorted(settings["auth.lti13.deployment_ids"]),
                # the tool's public key, served at /hub/lti13/jwks for the LMS
                "tool_jwks": tool_jwks(ctx.read(tool_key_file(ctx.paths))),
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
        keys = ", ".join(sorted(consumers_declared(settings))) or "(none set)"
        return (f"LTI 1.1 (Canvas: Settings > Apps > Add App > By URL)\n"
                f"  launch URL:    {base}/lti/launch\n"
                f"  config XML:    {base}/lti11/config\n"
                f"  consumer keys: {keys} (the secrets are in auth.lti11.consumers)\n"
                f"  open in a new window: JupyterHub refuses to run inside an iframe\n"
                f"  grades back to the LMS: give each graded link the custom parameter\n"
                f"    nbgrader_assignment=NAME (the nbgrader assignment), then run\n"
                f"    `sudo hardway course grades COURSE` after autograding\n")
    if settings["auth.type"] == "lti13":
        deployments = ", ".join(sorted(settings["auth.lti13.deployment_ids"])) or (
            "any (auth.lti13.deployment_ids is empty)")
        token = settings["auth.lti13.token_url"] or (
            "not set: no grades are sent (hardway config set auth.lti13.token_url URL)")
        return (f"LTI 1.3 (Canvas: Developer Keys > + LTI Key; Moodle: External tool > "
                f"Configure a tool manually)\n"
                f"  login initiation URL: {base}/lti13/oauth_login\n"
                f"  redirect URI:         {base}/lti13/oauth_callback\n"
                f"  JSON configuration:   {base}/lti13/config\n"
                f"  placement: open in a new window (Canvas: windowTarget _blank)\n"
                f"  deployment ids allowed: {deployments}\n"
                f"  public JWK URL (the tool's key, for grades): {base}/lti13/jwks\n"
                f"  services: Assignment and Grade Services (line items, scores)\n"
                f"  the platform's token URL (grades): {token}\n")
    raise ConfigError(f"auth.type is {settings['auth.type']!r}, not lti11 or lti13")


@hookimpl
def hardway_generated_secrets(settings: Settings, paths: Paths) -> list[Path]:
    return [tool_key_file(paths)] if settings["auth.type"] == "lti13" else []


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Lti11(), Lti13()]
