"""auth "ldap": an LDAP directory (OpenLDAP, Active Directory).

Who may log in with no allow list: members of ``auth.ldap.allowed_groups`` when set;
when it is empty, every directory user whose password checks out (hardway sets
allow_all then: the directory is the gate).
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


class Ldap(Choice):
    kind = "auth"
    name = "ldap"
    description = "Users and passwords from an LDAP directory."

    def keys(self) -> list[Key]:
        p = "auth.ldap."
        return [
            Key(p + "server", kt.Str(r"[A-Za-z0-9.:-]+", "a host name or address"), "",
                "LDAP server host.", required=True),
            Key(p + "port", kt.Int(1, 65535), None, "Port; default 389, or 636 for on_connect."),
            Key(p + "tls", kt.OneOf("before_bind", "on_connect", "insecure"), "before_bind",
                "STARTTLS before binding, TLS on connect (ldaps), or no TLS (tests only)."),
            Key(p + "bind_dn_template", kt.ListOf(kt.Str(r".*\{username\}.*",
                                                          "a DN with {username}")), [],
                "DNs to bind as, e.g. uid={username},ou=people,dc=example,dc=org."),
            Key(p + "user_search_base", kt.Str(), "",
                "Search for the user under this base instead of a bind DN template."),
            Key(p + "user_attribute", kt.Str(), "uid", "Attribute holding the username."),
            Key(p + "search_user", kt.Str(), "", "DN to bind as for the search."),
            Key(p + "search_password", kt.Str(), "", "Password of search_user.", secret=True),
            Key(p + "allowed_groups", kt.ListOf(kt.Str(empty=False)), [],
                "Group DNs whose members may log in."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-ldapauthenticator"]

    def validate(self, settings: Settings) -> None:
        s = settings.section("auth.ldap")
        if not s["bind_dn_template"] and not s["user_search_base"]:
            raise ConfigError("auth.ldap needs either bind_dn_template or user_search_base "
                              "to find a user's DN")

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        s = settings.section("auth.ldap")
        conf: dict[str, Any] = {"server_address": s["server"], "tls_strategy": s["tls"],
                                "allowed_groups": sorted(s["allowed_groups"])}
        if s["port"]:
            conf["server_port"] = s["port"]
        if s["bind_dn_template"]:
            conf["bind_dn_template"] = s["bind_dn_template"]
        if s["user_search_base"]:
            conf.update({"lookup_dn": True, "user_search_base": s["user_search_base"],
                         "user_attribute": s["user_attribute"],
                         "lookup_dn_search_user": s["search_user"],
                         "lookup_dn_search_password": ctx.secret(s["search_password"]),
                         "lookup_dn_user_dn_attribute": "cn"})
        return {"JupyterHub": {"authenticator_class": "ldapauthenticator"},
                "LDAPAuthenticator": conf,
                "Authenticator": allow_all_unless_listed(settings, s["allowed_groups"])}


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Ldap()]
