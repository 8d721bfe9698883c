"""auth "firstuse": a user's first login sets their password (the default).

Who may log in with no allow list: anyone may claim a name that is not taken yet, at
its first login (that is what "first use" means). With ``users.allowed`` set, only
those users and the admins may log in.
"""

from __future__ import annotations

import dbm
from typing import Any

from hardway import keytypes as kt
from hardway.apply import ensure_dir
from hardway.choices import Choice, Context
from hardway.hookspecs import hookimpl
from hardway.settings import Key, Settings


class FirstUse(Choice):
    kind = "auth"
    name = "firstuse"
    description = "Users choose their password at their first login."

    def keys(self) -> list[Key]:
        return [
            Key("auth.firstuse.min_password_length", kt.Int(1, 1024), 8,
                "Shortest password a user may choose."),
            Key("auth.firstuse.create_users", kt.Bool(), True,
                "Let a new name be claimed at its first login; when false only users the "
                "hub already knows (users.allowed, users.admin) may log in."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-firstuseauthenticator"]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {"authenticator_class": "firstuseauthenticator.FirstUseAuthenticator"},
            "FirstUseAuthenticator": {
                "dbm_path": str(ctx.paths.firstuse_db),
                "min_password_length": settings["auth.firstuse.min_password_length"],
                "create_users": settings["auth.firstuse.create_users"],
            },
        }

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        """The password database's directory, root-only (the hub creates the file)."""
        return ensure_dir(ctx.paths.firstuse_db.parent, 0o700)

    def post_install(self, settings: Settings, ctx: Context) -> list[str]:
        """Store the passwords given with ``--admin NAME:PASSWORD`` (bcrypt, as firstuse)."""
        if not ctx.admin_passwords:
            return []
        import bcrypt

        db_path = ctx.paths.firstuse_db
        ensure_dir(db_path.parent, 0o700)
        changes = []
        with dbm.open(str(db_path), "c", 0o600) as db:
            for name, password in sorted(ctx.admin_passwords.items()):
                key = name.lower().encode()
                stored = db.get(key)
                if stored is not None and bcrypt.checkpw(password.encode(), stored):
                    continue
                db[key] = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
                changes.append(f"{'set' if stored is None else 'changed'} the password of "
                               f"admin {name}")
        return changes


@hookimpl
def hardway_choices() -> list[Choice]:
    return [FirstUse()]
