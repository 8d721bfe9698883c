"""auth "generic" (any OAuth2/OpenID Connect provider) and "github", via oauthenticator.

Who may log in with no allow list: nobody but the admins, unless ``auth.allow_all`` is
true or the provider's groups are used (``auth.generic.allowed_groups``) or, for GitHub,
``auth.github.allowed_organizations``. The callback URL is built from ``public_url``.
"""

from __future__ import annotations

from typing import Any

from hardway.plugin import Choice, ConfigError, Context, Key, Settings, hookimpl
from hardway.plugin import keytypes as kt


def callback_url(settings: Settings) -> str:
    public = settings["public_url"]
    if not public:
        raise ConfigError(f"public_url is required with auth.type {settings['auth.type']}: "
                          "the provider redirects users back to it")
    return public.rstrip("/") + "/hub/oauth_callback"


class Generic(Choice):
    kind = "auth"
    name = "generic"
    description = "Any OAuth2 / OpenID Connect provider (Keycloak, Entra ID, Okta...)."

    def keys(self) -> list[Key]:
        p = "auth.generic."
        return [
            Key(p + "client_id", kt.Str(empty=False), "", "Client id at the provider.",
                required=True),
            Key(p + "client_secret", kt.Str(empty=False), "", "Client secret.", secret=True,
                required=True),
            Key(p + "authorize_url", kt.Url(), "", "Authorization endpoint.", required=True),
            Key(p + "token_url", kt.Url(), "", "Token endpoint.", required=True),
            Key(p + "userdata_url", kt.Url(), "", "Userinfo endpoint.", required=True),
            Key(p + "username_claim", kt.Str(empty=False), "preferred_username",
                "Userinfo claim that becomes the username (must be unique)."),
            Key(p + "scope", kt.ListOf(kt.Str(empty=False)), ["openid", "profile", "email"],
                "Scopes requested."),
            Key(p + "groups_claim", kt.Str(), "", "Userinfo claim listing the user's groups."),
            Key(p + "allowed_groups", kt.ListOf(kt.Str(empty=False)), [],
                "Members of these provider groups may log in (needs groups_claim)."),
            Key(p + "admin_groups", kt.ListOf(kt.Str(empty=False)), [],
                "Members of these provider groups are hub admins (needs groups_claim)."),
            Key(p + "basic_auth", kt.Bool(), True,
                "Send the client credentials with HTTP basic auth (client_secret_basic)."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["oauthenticator"]

    def validate(self, settings: Settings) -> None:
        callback_url(settings)
        s = settings.section("auth.generic")
        if (s["allowed_groups"] or s["admin_groups"]) and not s["groups_claim"]:
            raise ConfigError("auth.generic.groups_claim is required when allowed_groups or "
                              "admin_groups is set: name the userinfo claim holding groups")

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        s = settings.section("auth.generic")
        conf: dict[str, Any] = {
            "client_id": s["client_id"], "client_secret": ctx.secret(s["client_secret"]),
            "authorize_url": s["authorize_url"], "token_url": s["token_url"],
            "userdata_url": s["userdata_url"], "username_claim": s["username_claim"],
            "scope": s["scope"], "basic_auth": s["basic_auth"], "enable_pkce": True,
            "oauth_callback_url": callback_url(settings),
        }
        if s["groups_claim"]:
            conf.update({"manage_groups": True, "auth_state_groups_key":
                         f"oauth_user.{s['groups_claim']}",
                         "allowed_groups": sorted(s["allowed_groups"]),
                         "admin_groups": sorted(s["admin_groups"])})
        return {"JupyterHub": {"authenticator_class": "generic-oauth"},
                "GenericOAuthenticator": conf}


class GitHub(Choice):
    kind = "auth"
    name = "github"
    description = "GitHub accounts, optionally limited to organisations or teams."

    def keys(self) -> list[Key]:
        p = "auth.github."
        return [
            Key(p + "client_id", kt.Str(empty=False), "", "OAuth app client id.", required=True),
            Key(p + "client_secret", kt.Str(empty=False), "", "OAuth app client secret.",
                secret=True, required=True),
            Key(p + "allowed_organizations",
                kt.ListOf(kt.Str(r"[A-Za-z0-9-]+(:[A-Za-z0-9_.-]+)?", "org or org:team")), [],
                "Members of these organisations (or org:team) may log in."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["oauthenticator"]

    def validate(self, settings: Settings) -> None:
        callback_url(settings)

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        orgs = sorted(settings["auth.github.allowed_organizations"])
        conf: dict[str, Any] = {
            "client_id": settings["auth.github.client_id"],
            "client_secret": ctx.secret(settings["auth.github.client_secret"]),
            "oauth_callback_url": callback_url(settings),
            "allowed_organizations": orgs,
        }
        if orgs:
            conf["scope"] = ["read:org"]
        return {"JupyterHub": {"authenticator_class": "github"},
                "GitHubOAuthenticator": conf}


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Generic(), GitHub()]
