"""proxy "traefik": Traefik as its own systemd service, configured by files.

The hub talks to it through jupyterhub-traefik-proxy's file provider: routes go to a
file in a watched rules directory (throttle 0 s), the API listens on loopback only,
behind basic auth with a bcrypt-hashed password.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hardway import tls
from hardway.apply import proxy_gate, traefik_binary
from hardway.apply.files import ensure_dir, ensure_self_signed, secure_owner
from hardway.plugin import (
    Choice,
    Context,
    File,
    Key,
    Paths,
    Settings,
    deep_merge,
    hookimpl,
)
from hardway.plugin import keytypes as kt
from hardway.plugin.manager import results
from hardway.render import HEADER, render_unit, toml_bytes

PROXY_USER = "hardway-proxy"
API_USER = "hardway"
ENTRYPOINT = "http"
API_ENTRYPOINT = "auth_api"
PLAIN_ENTRYPOINT = "http-redirect"
RESOLVER = "hardway"
LE_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LE_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
HEADERS = "hardway-headers"
#: runs the gate (standard library only): there on every supported system, whatever
#: happens to the hub's environment
SYSTEM_PYTHON = "/usr/bin/python3"
#: how long a stopping Traefik lets requests in flight finish (and holds a kernel's
#: websocket, which Jupyter reopens): new visitors wait this long at most during a restart
GRACE = "2s"


def acme_store(acme_dir: Path, ca_server: str) -> Path:
    """Traefik's ACME store for this CA: acme-<host>-<hash of the directory URL>.json."""
    import hashlib
    from urllib.parse import urlsplit

    host = re.sub(r"[^A-Za-z0-9.-]", "_", urlsplit(ca_server).hostname or "ca")
    return acme_dir / f"acme-{host}-{hashlib.sha256(ca_server.encode()).hexdigest()[:8]}.json"


def ca_server(settings: Settings) -> str:
    """The ACME directory URL the settings name."""
    s = settings.section("https.letsencrypt")
    return s["ca_server"] or (LE_STAGING if s["staging"] else LE_PRODUCTION)


#: the proxy's unit (restarted after a new binary or a removed link)
PROXY_UNIT = "jupyterhub-proxy.service"


def socket_unit(port: int | str) -> str:
    """The systemd socket holding one public port, named after the port, not the entry
    point served on it: turning HTTPS on moves the entry point "http" from port 80 to the
    HTTPS port, and port 80's socket must stay open meanwhile (hardway's core restarts a
    socket only with the proxy stopped: see hardway.ops.install.proxy_sockets)."""
    return f"jupyterhub-proxy-{port}.socket"


class Traefik(Choice):
    kind = "proxy"
    name = "traefik"
    description = "Traefik, run by systemd as an unprivileged user, routes set by the hub."

    def keys(self) -> list[Key]:
        return [
            Key("proxy.traefik.api_port", kt.Int(1, 65535), 8099,
                "Loopback port of Traefik's API (basic auth; the hub uses it)."),
            Key("proxy.traefik.download_url", kt.Url(), traefik_binary.RELEASES,
                "Where the Traefik release tarball is fetched from: the release host or a "
                "mirror laid out like it (.../v3.7.15/traefik_v3.7.15_linux_amd64.tar.gz). "
                "Whatever the source, the binary's sha256 must match hardway's pin.",
                hub=False),
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
        address = settings["http.address"] or ""  # empty: every address
        mode = tls.source(settings)
        forwarded = ({"forwardedHeaders": {"trustedIPs": list(settings["http.trusted_proxies"])}}
                     if settings["http.trusted_proxies"] else {})
        # the hub's routes always live on the entry point named "http" (existing route
        # files name it); with HTTPS on, it listens on the HTTPS port with TLS and a
        # second entry point on the HTTP port only redirects (and answers ACME http-01)
        lifecycle = {"lifeCycle": {"graceTimeOut": GRACE}}
        main: dict[str, Any] = {
            "address": kt.host_port(address, settings["http.port"]),
            "transport": lifecycle,
            # defined in the watched dynamic config: edits need no restart
            "http": {"middlewares": [f"{HEADERS}@file"]}, **forwarded}
        entry_points: dict[str, Any] = {ENTRYPOINT: main}
        static: dict[str, Any] = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            # plain text for journald (colour codes make `journalctl | grep` miss)
            "log": {"level": settings["proxy.traefik.log_level"], "noColor": True},
            "entryPoints": entry_points,
            "api": {"dashboard": False},
            "providers": {
                "providersThrottleDuration": "0s",
                "file": {"directory": str(ctx.paths.rules_dir), "watch": True},
            },
        }
        if mode != "off":
            main["address"] = kt.host_port(address, settings["https.port"])
            main["http"]["tls"] = {}
            entry_points[PLAIN_ENTRYPOINT] = {
                "address": kt.host_port(address, settings["http.port"]),
                "transport": lifecycle,
                "http": {"redirections": {"entryPoint": {
                    "to": ENTRYPOINT, "scheme": "https", "permanent": True}}},
                **forwarded}
        if mode == "acme":
            domains = settings["https.letsencrypt.domains"]
            main["http"]["tls"] = {"certResolver": RESOLVER,
                                   "domains": [{"main": domains[0], "sans": domains[1:]}]}
            static["certificatesResolvers"] = {RESOLVER: {"acme": self.acme(settings, ctx)}}
        entry_points[API_ENTRYPOINT] = {
            "address": f"127.0.0.1:{settings['proxy.traefik.api_port']}"}
        return static

    def acme(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        s = settings.section("https.letsencrypt")
        server = ca_server(settings)
        acme: dict[str, Any] = {
            "caServer": server,
            # one store per CA: an account from staging (or another CA) is never reused
            # against the next one, which is the "delete acme.json" step admins miss
            "storage": str(acme_store(ctx.paths.acme_dir, server)),
            # P-256: as trusted as RSA, and far cheaper for the CA, Traefik and clients
            "keyType": "EC256",
        }
        if s["email"]:
            acme["email"] = s["email"]
        if s["ca_certificates"]:
            # copies Traefik's user can read (render() writes them): the admin's files
            # may sit in root-only places such as /etc/hardway
            acme["caCertificates"] = [str(p) for p, _ in self.acme_cas(settings, ctx)]
        if s["challenge"] == "http-01":
            acme["httpChallenge"] = {"entryPoint": PLAIN_ENTRYPOINT}
        else:
            acme["tlsChallenge"] = {}
        if s["eab_kid"]:
            acme["eab"] = {"kid": s["eab_kid"], "hmacEncoded": ctx.secret(s["eab_hmac"])}
        return acme

    def acme_cas(self, settings: Settings, ctx: Context) -> list[tuple[Path, bytes]]:
        # validate() has refused an unreadable file already
        return [(ctx.paths.proxy_dir / "acme-ca" / f"{i}.pem", ctx.read(src) or b"")
                for i, src in enumerate(settings["https.letsencrypt.ca_certificates"])]

    def inputs(self, settings: Settings, paths: Paths) -> list[Path]:
        mode = tls.source(settings)
        if mode == "files":
            return [Path(settings["https.tls.cert"]), Path(settings["https.tls.key"])]
        if mode == "self-signed":
            return [paths.self_signed_cert, paths.self_signed_key]
        if mode == "acme":
            return [Path(p) for p in settings["https.letsencrypt.ca_certificates"]]
        return []

    def dynamic_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        # Traefik refuses a headers middleware with nothing in it, so one header is fixed
        headers: dict[str, Any] = {"contentTypeNosniff": True}
        if settings["proxy.traefik.response_headers"]:
            headers["customResponseHeaders"] = settings["proxy.traefik.response_headers"]
        mode = tls.source(settings)
        if mode != "off" and settings["https.hsts"]:
            headers["stsSeconds"] = 31536000
        dynamic: dict[str, Any] = {
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
        if mode == "off":
            return dynamic
        # certificates and TLS options live here, in the watched dynamic config: changing
        # them restarts nothing and drops no connection
        store: dict[str, Any] = {}
        dynamic["tls"] = {"options": {"default": {"minVersion": "VersionTLS12",
                                                  "sniStrict": False}},
                          "stores": {"default": store}}
        if mode == "acme":
            # clients that send no server name (or an IP) get the ACME certificate too,
            # not Traefik's built-in "TRAEFIK DEFAULT CERT": any certificate valid for the
            # first name. Not one for the whole set: a name the CA refuses would leave
            # them the placeholder (and with several names, Traefik orders this one
            # apart: one more certificate, for the first name alone)
            store["defaultGeneratedCert"] = {
                "resolver": RESOLVER,
                "domain": {"main": settings["https.letsencrypt.domains"][0]}}
            return dynamic
        if mode == "files":
            cert_path, key_path = Path(settings["https.tls.cert"]), Path(settings["https.tls.key"])
            names = ("https.tls.cert", "https.tls.key")
        else:
            cert_path, key_path = ctx.paths.self_signed_cert, ctx.paths.self_signed_key
            names = ("https.self_signed", "https.self_signed")
        cert_pem, key_pem = ctx.read(cert_path), ctx.read(key_path)
        if cert_pem is None or key_pem is None:
            # only a dry run gets here before install() made the self-signed pair (a
            # given file that is missing was refused by validate()): nothing is generated
            # for a preview; the rules file will hold the pair made at reload
            return dynamic
        pair = tls.parse_pair(cert_pem, key_pem, cert_path, key_path, *names)
        # the PEM itself, not a path: Traefik reads certFile/keyFile content inline, and
        # a changed certificate then changes this watched file (no restart, no stale copy)
        cert = {"certFile": pair.cert_pem.decode(), "keyFile": pair.key_pem.decode()}
        dynamic["tls"]["certificates"] = [cert]
        store["defaultCertificate"] = cert
        return dynamic

    def gate_options(self, settings: Settings, ctx: Context) -> list[str]:
        """What the gate checks before it lets connections in: the API router (loaded
        with every route), and with ACME the stored certificate for the first name."""
        options = [f"--api-port={settings['proxy.traefik.api_port']}"]
        if tls.source(settings) == "acme":
            host = settings["http.address"] or "127.0.0.1"
            store = acme_store(ctx.paths.acme_dir, ca_server(settings))
            options += [f"--probe={kt.host_port(host, settings['https.port'])}",
                        f"--sni={settings['https.letsencrypt.domains'][0]}",
                        f"--acme-store={store}"]
        return options

    def sockets(self, static: dict[str, Any], settings: Settings, p: Paths) -> list[File]:
        """A systemd socket per public port; a drop-in names it after the entry point
        served on it (Traefik takes the listening socket whose name is its entry
        point's). A new name is a drop-in change: daemon-reload, and the socket stays
        open; only a new address or port reopens it."""
        files = []
        for name, entry in sorted(static["entryPoints"].items()):
            if name == API_ENTRYPOINT:
                continue  # loopback, Traefik's own (the hub reaches it; nothing waits)
            address = entry["address"]
            unit = socket_unit(address.rpartition(":")[2])
            listen = address.removeprefix(":")  # ":80": every address, as systemd's "80"
            lines = [f"# {HEADER}", "[Unit]",
                     "Description=hardway: a port of the proxy (systemd holds it across "
                     "restarts of the proxy)", "", "[Socket]", f"ListenStream={listen}",
                     f"Service={PROXY_UNIT}", "NoDelay=yes", "Backlog=4096"]
            if not address.startswith(":"):
                lines.append("FreeBind=yes")  # a given address may come up after boot
            lines += ["", "[Install]", "WantedBy=sockets.target", ""]
            files.append(File(p.unit(unit), "\n".join(lines).encode(), component=unit))
            files.append(File(p.unit(f"{unit}.d") / "entry-point.conf",
                              f"# {HEADER}\n[Socket]\nFileDescriptorName={name}\n".encode(),
                              component="proxy"))
        return files

    def render(self, settings: Settings, ctx: Context) -> list[File]:
        p = ctx.paths
        static = self.static_config(settings, ctx)
        dynamic = self.dynamic_config(settings, ctx)
        pm = ctx.pm
        if pm is not None:
            for extra in results(pm, "hardway_traefik_static", settings=settings, ctx=ctx):
                static = deep_merge(static, extra)
        files = [
            File(p.traefik_toml, toml_bytes(static), 0o640, "root", PROXY_USER, "proxy"),
            File(p.rules_dir / "00-hardway.toml", toml_bytes(dynamic), 0o640, "root",
                 PROXY_USER, "proxy-dynamic"),
        ]
        sockets = self.sockets(static, settings, p)
        gate = p.proxy_dir / "gate.py"
        files += [*sockets,
                  File(gate, Path(proxy_gate.__file__).read_bytes(), 0o640, "root",
                       PROXY_USER, "proxy"),
                  File(p.unit("jupyterhub-proxy.service"),
                       render_unit("jupyterhub-proxy.service", proxy_user=PROXY_USER,
                                   python=SYSTEM_PYTHON, gate=gate,
                                   gate_options=" ".join(self.gate_options(settings, ctx)),
                                   traefik_binary=p.traefik_binary,
                                   traefik_toml=p.traefik_toml, acme_dir=p.acme_dir,
                                   sockets=" ".join(f.component for f in sockets
                                                    if f.component != "proxy")),
                       component="proxy")]
        if tls.source(settings) == "acme":
            files += [File(path, content, 0o640, "root", PROXY_USER, "proxy")
                      for path, content in self.acme_cas(settings, ctx)]
        if pm is not None:
            extras = [e for e in results(pm, "hardway_traefik_dynamic", settings=settings,
                                         ctx=ctx) if e]
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
                "proxy_class": "hardway_plugins.proxy.traefik_proxy.HardwayTraefikProxy",
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
        for store in sorted(p.acme_dir.glob("*.json")):
            # Traefik drops a resolver whose store others can read: keep them the proxy's.
            # The directory is the proxy's to write: never follow a link planted in it
            said = secure_owner(store, 0o600, uid, gid)
            if said is not None:
                changes.append(said)
        for planted in sorted(p.rules_dir.iterdir()):
            # only root writes here: a link is foreign, and the proxy's file watcher
            # stops serving every route when it cannot follow one
            if planted.is_symlink():
                target = os.readlink(planted)
                planted.unlink()
                changes.append(f"refused {planted}: a symbolic link (to {target}) in the "
                               "proxy's rules directory; not followed, removed (the proxy "
                               "restarts: its file watcher stops at such a link)")
                ctx.restart.add(PROXY_UNIT)
        if tls.source(settings) == "self-signed":
            names = tls.self_signed_names(settings)
            if ensure_self_signed(p.self_signed_cert, p.self_signed_key, names):
                changes.append(f"generated a self-signed certificate for {', '.join(names)}")
        local = ctx.traefik_local
        known = ctx.state.get("traefik")
        moved = p.hub_venv / "bin" / "traefik"  # where it was, before switchable envs
        if local is None and not p.traefik_binary.exists() and moved.is_file() \
                and traefik_binary.is_current(moved):
            local = moved  # copied (and checked) rather than downloaded again
        installed = traefik_binary.ensure(p.traefik_binary, system, local, ctx.notes, known,
                                          settings["proxy.traefik.download_url"])
        if installed is not None:
            changes.append(f"installed Traefik {installed.version} from {installed.source}")
            ctx.restart.add(PROXY_UNIT)
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
