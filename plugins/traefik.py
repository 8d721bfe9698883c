"""proxy "traefik": Traefik as its own systemd service, configured by files.

The hub talks to it through jupyterhub-traefik-proxy's file provider: routes go to a
file in a watched rules directory (throttle 0 s), the API listens on loopback only,
behind basic auth with a bcrypt-hashed password.
"""

from __future__ import annotations

from typing import Any

from hardway import keytypes as kt
from hardway import traefik_binary
from hardway.apply import ensure_dir
from hardway.choices import Choice, Context, File, deep_merge
from hardway.hookspecs import hookimpl
from hardway.render import render_unit, toml_bytes
from hardway.settings import Key, Settings

PROXY_USER = "hardway-proxy"
API_USER = "hardway"
ENTRYPOINT = "http"
API_ENTRYPOINT = "auth_api"
HEADERS = "hardway-headers"


class Traefik(Choice):
    kind = "proxy"
    name = "traefik"
    description = "Traefik, run by systemd as an unprivileged user, routes set by the hub."

    def keys(self) -> list[Key]:
        return [
            Key("proxy.traefik.api_port", kt.Int(1, 65535), 8099,
                "Loopback port of Traefik's API (basic auth; the hub uses it)."),
            Key("proxy.traefik.log_level", kt.OneOf("DEBUG", "INFO", "WARN", "ERROR"), "INFO",
                "Traefik's log level (journalctl -u jupyterhub-proxy).", hub=False),
            Key("proxy.traefik.response_headers",
                kt.MapOf(kt.Str(r"[^\r\n]*", "header text on one line")), {},
                "Extra HTTP headers on every response, e.g. X-Robots-Tag=noindex; an empty "
                "value removes that header. X-Content-Type-Options: nosniff is always sent. "
                "Changing them restarts nothing.", hub=False),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-traefik-proxy"]

    def api_url(self, settings: Settings) -> str:
        return f"http://127.0.0.1:{settings['proxy.traefik.api_port']}"

    def static_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        address = settings["http.address"]
        if ":" in address:  # IPv6 literal
            address = f"[{address}]"
        return {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "log": {"level": settings["proxy.traefik.log_level"]},
            "entryPoints": {
                ENTRYPOINT: {"address": f"{address}:{settings['http.port']}",
                             # defined in the watched dynamic config: edits need no restart
                             "http": {"middlewares": [f"{HEADERS}@file"]}},
                API_ENTRYPOINT: {"address": f"127.0.0.1:{settings['proxy.traefik.api_port']}"},
            },
            "api": {"dashboard": False},
            "providers": {
                "providersThrottleDuration": "0s",
                "file": {"directory": str(ctx.paths.rules_dir), "watch": True},
            },
        }

    def dynamic_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        # Traefik refuses a headers middleware with nothing in it, so one header is fixed
        headers: dict[str, Any] = {"contentTypeNosniff": True}
        if settings["proxy.traefik.response_headers"]:
            headers["customResponseHeaders"] = settings["proxy.traefik.response_headers"]
        return {
            "http": {
                "routers": {
                    "route_api": {
                        "rule": "PathPrefix(`/api`)",
                        "entryPoints": [API_ENTRYPOINT],
                        "service": "api@internal",
                        "middlewares": ["auth_api"],
                    }
                },
                "middlewares": {
                    "auth_api": {"basicAuth": {
                        "users": [f"{API_USER}:{ctx.secrets['proxy_api_hash']}"]}},
                    HEADERS: {"headers": headers},
                },
            }
        }

    def render(self, settings: Settings, ctx: Context) -> list[File]:
        p = ctx.paths
        static = self.static_config(settings, ctx)
        dynamic = self.dynamic_config(settings, ctx)
        pm = ctx.pm
        if pm is not None:
            for extra in reversed(pm.hook.hardway_traefik_static(settings=settings, ctx=ctx)):
                static = deep_merge(static, extra or {})
        files = [
            File(p.traefik_toml, toml_bytes(static), 0o640, "root", PROXY_USER, "proxy"),
            File(p.rules_dir / "00-hardway.toml", toml_bytes(dynamic), 0o640, "root",
                 PROXY_USER, "proxy-dynamic"),
            File(p.unit("jupyterhub-proxy.service"),
                 render_unit("jupyterhub-proxy.service", proxy_user=PROXY_USER,
                             traefik_binary=p.traefik_binary, traefik_toml=p.traefik_toml,
                             acme_dir=p.acme_dir), component="proxy"),
        ]
        if pm is not None:
            extras = [e for e in reversed(pm.hook.hardway_traefik_dynamic(
                settings=settings, ctx=ctx)) if e]
            if extras:
                merged: dict[str, Any] = {}
                for e in extras:
                    merged = deep_merge(merged, e)
                files.append(File(p.rules_dir / "50-plugins.toml", toml_bytes(merged), 0o640,
                                  "root", PROXY_USER, "proxy-dynamic"))
        return files

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {
            "JupyterHub": {
                "proxy_class": "hardway_plugins.traefik_proxy.HardwayTraefikProxy",
            },
            "Proxy": {"should_start": False},
            "HardwayTraefikProxy": {
                "traefik_api_url": self.api_url(settings),
                "traefik_api_username": API_USER,
                "traefik_api_password_file": str(ctx.paths.secrets / "proxy_api_password"),
                "dynamic_config_file": str(ctx.paths.routes_file),
                "enable_setup_dynamic_config": False,
                "traefik_entrypoint": ENTRYPOINT,
                "traefik_api_entrypoint": API_ENTRYPOINT,
                "proxy_group": PROXY_USER,
                "check_route_timeout": 60,
            },
        }

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        system = ctx.system
        assert system is not None
        changes = []
        if not system.user_exists(PROXY_USER):
            system.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        PROXY_USER])
            changes.append(f"created system user {PROXY_USER}")
        p = ctx.paths
        uid, gid = system.ids(PROXY_USER, PROXY_USER)
        changes += ensure_dir(p.proxy_dir, 0o750, 0, gid)
        changes += ensure_dir(p.rules_dir, 0o750, 0, gid)
        changes += ensure_dir(p.acme_dir, 0o700, uid, gid)
        local = ctx.traefik_local
        known = ctx.state.get("traefik")
        installed = traefik_binary.ensure(p.traefik_binary, system, local, ctx.notes, known)
        if installed is not None:
            changes.append(f"installed Traefik {installed.version} from {installed.source}")
            ctx.state["traefik"] = {"version": installed.version, "source": installed.source,
                                    "sha256": installed.sha256,
                                    "stamp": traefik_binary.file_stamp(p.traefik_binary)}
        elif isinstance(known, dict) and local is None:
            # checked and current: remember its stamp so the next run need not hash it
            ctx.state["traefik"] = {**known, "stamp": traefik_binary.file_stamp(p.traefik_binary)}
        return changes


@hookimpl
def hardway_choices() -> list[Choice]:
    return [Traefik()]
