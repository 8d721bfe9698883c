"""The idle culler (jupyterhub-idle-culler) as a hub service, on by default.

It runs with its own API token and a role holding only the scopes it needs, never as an
admin, and as its own unprivileged system account (``hardway-services``), not as root
like the hub: it only calls the hub's API. Boolean flags of culler 2.x need an explicit
value (``--cull-users=true``).
"""

from __future__ import annotations

from typing import Any

from hardway.plugin import Context, Key, Settings, hookimpl
from hardway.plugin import keytypes as kt

#: the system account hub-managed helper services run as
SERVICE_USER = "hardway-services"


@hookimpl
def hardway_config_keys() -> list[Key]:
    return [
        Key("services.cull.enabled", kt.Bool(), True, "Stop servers that sit idle.",
            owner="cull"),
        Key("services.cull.timeout", kt.Int(10, 10**8), 3600,
            "Seconds without activity after which a server is stopped.", owner="cull"),
        Key("services.cull.every", kt.Int(5, 10**7), 300,
            "Seconds between two checks for idle servers.", owner="cull"),
        Key("services.cull.max_age", kt.Int(0, 10**9), 0,
            "Stop servers older than this many seconds even if active; 0: never.",
            owner="cull"),
        Key("services.cull.users", kt.Bool(), False,
            "Also delete users (not their files) whose servers were culled.", owner="cull"),
    ]


@hookimpl
def hardway_hub_packages(settings: Settings) -> list[str]:
    return ["jupyterhub-idle-culler"] if settings["services.cull.enabled"] else []


@hookimpl
def hardway_hub_config(settings: Settings, ctx: Context) -> dict[str, Any]:
    if not settings["services.cull.enabled"]:
        return {}
    s = settings.section("services.cull")
    python = str(ctx.paths.hub_venv / "bin" / "python")
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if s["users"]:
        scopes.append("admin:users")
    return {
        "JupyterHub": {
            "services": [{
                "name": "idle-culler",
                "user": SERVICE_USER,
                "cwd": "/",
                "command": [python, "-m", "jupyterhub_idle_culler",
                            f"--timeout={s['timeout']}", f"--cull-every={s['every']}",
                            f"--max-age={s['max_age']}",
                            f"--cull-users={'true' if s['users'] else 'false'}"],
            }],
            "load_roles": [{"name": "idle-culler", "description": "stop idle servers",
                            "scopes": scopes, "services": ["idle-culler"]}],
        }
    }


@hookimpl
def hardway_post_install(settings: Settings, ctx: Context) -> None:
    """The unprivileged account the culler runs as (the hub starts it as that user)."""
    if ctx.system is None or ctx.system.user_exists(SERVICE_USER):
        return
    ctx.system.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                    SERVICE_USER])
    ctx.notes.append(f"created system user {SERVICE_USER} (the idle culler runs as it)")
