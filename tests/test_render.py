from __future__ import annotations

import json
import re

import pytest
import tomlkit
from conftest import write_config

from hardway.ops.install import render_now
from hardway.plugin.contract import Context
from hardway.plugin.manager import load_settings


def render(paths, registry):
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "$2b$12$hash"}, pm=registry.pm)
    return {f.path: f for f in render_now(settings, registry, ctx)}


def test_rendering_is_deterministic(paths, registry):
    a, b = render(paths, registry), render(paths, registry)
    assert {p: f.content for p, f in a.items()} == {p: f.content for p, f in b.items()}


def test_traefik_static_config(paths, registry):
    files = render(paths, registry)
    f = files[paths.traefik_toml]
    static = tomlkit.loads(f.content.decode()).unwrap()
    assert static["providers"]["providersThrottleDuration"] == "0s"
    assert static["providers"]["file"] == {"directory": str(paths.rules_dir), "watch": True}
    assert static["entryPoints"]["auth_api"]["address"] == "127.0.0.1:8099"
    assert static["entryPoints"]["http"]["address"] == ":80"
    assert (f.mode, f.owner, f.group, f.component) == (0o640, "root", "hardway-proxy", "proxy")


def test_traefik_api_behind_basic_auth_with_the_hash_only(paths, registry):
    f = render(paths, registry)[paths.rules_dir / "00-hardway.toml"]
    dynamic = tomlkit.loads(f.content.decode()).unwrap()
    router = dynamic["http"]["routers"]["route_api"]
    assert router["entryPoints"] == ["auth_api"] and router["middlewares"] == ["auth_api"]
    assert dynamic["http"]["middlewares"]["auth_api"]["basicAuth"]["users"] == [
        "hardway:$2b$12$hash"]
    assert f.component == "proxy-dynamic"


def test_hub_config(paths, registry):
    write_config(paths, "users:\n  admin: [alice]\nlimits:\n  memory: 2G\n  cpu: 1.5\n"
                        "user_environment:\n  default_app: classic\n")
    f = render(paths, registry)[paths.hub_json]
    assert f.mode == 0o600
    config = json.loads(f.content)["config"]
    assert config["JupyterHub"]["cleanup_servers"] is False
    assert config["Proxy"]["should_start"] is False
    assert config["Authenticator"]["admin_users"] == ["alice"]
    assert config["Spawner"]["mem_limit"] == "2G"
    assert config["Spawner"]["cpu_limit"] == 1.5
    assert config["Spawner"]["default_url"] == "/tree"
    assert config["HardwayTraefikProxy"]["traefik_api_password_file"].endswith(
        "secrets/proxy_api_password")
    # no secret value is rendered into hub.json
    assert "$2b$" not in f.content.decode()


def test_units(paths, registry):
    files = render(paths, registry)
    proxy = files[paths.unit("jupyterhub-proxy.service")].content.decode()
    assert "User=hardway-proxy" in proxy
    # no capability to bind ports: its public ports are systemd's sockets, named after
    # the entry points Traefik serves on them. The one capability is the gate's, which
    # holds the ports while no loaded Traefik serves them (and clears it before exec)
    assert "CapabilityBoundingSet=CAP_NET_ADMIN\n" in proxy
    assert "AmbientCapabilities=CAP_NET_ADMIN\n" in proxy
    gate = paths.proxy_dir / "gate.py"
    assert files[gate].content.startswith(b'"""The gate in front of the proxy') and \
        files[gate].component == "proxy"
    assert re.search(rf"^ExecStart=/usr/bin/python3 -I -S {gate} start --api-port=8099 -- "
                     rf"{paths.traefik_binary} --configFile={paths.traefik_toml}$", proxy, re.M)
    assert f"ExecStop=-/usr/bin/python3 -I -S {gate} stop\n" in proxy
    assert "Type=notify\nNotifyAccess=all\n" in proxy
    assert "Sockets=jupyterhub-proxy-80.socket\n" in proxy
    socket = files[paths.unit("jupyterhub-proxy-80.socket")]
    assert socket.component == "jupyterhub-proxy-80.socket"
    text = socket.content.decode()
    named = files[paths.unit("jupyterhub-proxy-80.socket.d") / "entry-point.conf"]
    assert "ListenStream=80\n" in text and "FileDescriptorName=http\n" in named.content.decode()
    assert "Service=jupyterhub-proxy.service\n" in text and "FreeBind" not in text
    assert f"ReadWritePaths=-{paths.acme_dir}" in proxy
    hub = files[paths.unit("jupyterhub.service")].content.decode()
    assert "Wants=jupyterhub-proxy.service" in hub and "Requires=" not in hub
    assert f"WorkingDirectory={paths.state}" in hub
    assert "Restart=always" in hub and "Restart=always" in proxy
    # with NoNewPrivileges, systemd >= 255 keeps CAP_SETUID only when it is ambient: the
    # hub starts its helper services (the idle culler) as their own users
    assert "NoNewPrivileges=yes" in hub and "AmbientCapabilities=CAP_SETUID" in hub


def test_allow_all_only_when_asked(paths, registry):
    config = json.loads(render(paths, registry)[paths.hub_json].content)["config"]
    assert "allow_all" not in config["Authenticator"]
    write_config(paths, "auth:\n  allow_all: true\n")
    config = json.loads(render(paths, registry)[paths.hub_json].content)["config"]
    assert config["Authenticator"]["allow_all"] is True


def test_response_headers_are_dynamic_and_never_empty(paths, registry):
    files = render(paths, registry)
    static = tomlkit.loads(files[paths.traefik_toml].content.decode()).unwrap()
    assert static["entryPoints"]["http"]["http"]["middlewares"] == ["hardway-headers@file"]
    dynamic = tomlkit.loads(files[paths.rules_dir / "00-hardway.toml"].content.decode()).unwrap()
    assert dynamic["http"]["middlewares"]["hardway-headers"] == {
        "headers": {"contentTypeNosniff": True}}
    write_config(paths, "proxy:\n  traefik:\n    response_headers:\n      X-Robots-Tag: noindex\n")
    again = render(paths, registry)
    assert again[paths.traefik_toml].content == files[paths.traefik_toml].content
    dynamic = tomlkit.loads(again[paths.rules_dir / "00-hardway.toml"].content.decode()).unwrap()
    assert dynamic["http"]["middlewares"]["hardway-headers"]["headers"][
        "customResponseHeaders"] == {"X-Robots-Tag": "noindex"}


def test_cull_service_with_a_scoped_role_not_admin(paths, registry):
    config = json.loads(render(paths, registry)[paths.hub_json].content)["config"]
    (service,) = config["JupyterHub"]["services"]
    assert service["name"] == "idle-culler"
    assert "--timeout=3600" in service["command"] and "--cull-users=false" in service["command"]
    assert "admin" not in service
    (role,) = config["JupyterHub"]["load_roles"]
    assert role["services"] == ["idle-culler"]
    assert "admin:users" not in role["scopes"] and "delete:servers" in role["scopes"]
    write_config(paths, "services:\n  cull:\n    enabled: false\n")
    config = json.loads(render(paths, registry)[paths.hub_json].content)["config"]
    assert "services" not in config["JupyterHub"]


def test_db_url_logo_and_secret_files(paths, registry, tmp_path):
    secret = tmp_path / "db-url"
    secret.write_text("postgresql://hub:s3cret@127.0.0.1/hub\n")
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG")
    write_config(paths, f"hub:\n  db_url: file:{secret}\nbranding:\n  logo: {logo}\n")
    from hardway.ops.install import collect

    settings = load_settings(paths, registry)
    assert "psycopg[binary]" in collect(registry, settings, "hub")
    config = json.loads(render(paths, registry)[paths.hub_json].content)["config"]
    assert config["JupyterHub"]["db_url"] == "postgresql://hub:s3cret@127.0.0.1/hub"
    assert config["JupyterHub"]["logo_file"] == str(logo)


def test_missing_logo_is_refused(paths, registry):
    import pytest

    from hardway.errors import ConfigError

    write_config(paths, "branding:\n  logo: /nonexistent/logo.png\n")
    with pytest.raises(ConfigError, match=r"branding\.logo: /nonexistent/logo\.png is not a"):
        load_settings(paths, registry)


def test_proxy_only_keys_leave_the_hub_config_alone(paths, registry):
    before = render(paths, registry)
    write_config(paths, "proxy:\n  traefik:\n    response_headers:\n      X-A: b\n"
                        "    log_level: DEBUG\n")
    after = render(paths, registry)
    assert after[paths.hub_json].content == before[paths.hub_json].content
    assert after[paths.traefik_toml].content != before[paths.traefik_toml].content


def test_rendered_traefik_files_are_checked(paths, registry):
    from hardway.ops.checks import traefik_problems
    from hardway.plugin.contract import File

    files = list(render(paths, registry).values())
    assert traefik_problems(files) == []
    bad = [File(paths.traefik_toml, b'[entryPoint.http]\naddress = ":80"\n', component="proxy"),
           File(paths.rules_dir / "x.toml", b"[htp.routers.a]\n", component="proxy-dynamic"),
           File(paths.rules_dir / "y.toml", b"[http\n", component="proxy-dynamic")]
    found = "\n".join(traefik_problems(bad))
    assert "no static configuration section 'entryPoint'" in found
    assert "no dynamic configuration section 'htp'" in found
    assert "y.toml: not valid TOML" in found


@pytest.mark.parametrize("address, host", [("", ""), ("127.0.0.1", "127.0.0.1"),
                                           ("::1", "[::1]"), ("::", "[::]"),
                                           ("2001:db8::1", "[2001:db8::1]")])
def test_http_address_renders_for_jupyterhub_and_traefik(paths, registry, address, host):
    from urllib.parse import urlsplit

    from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy

    write_config(paths, f"http:\n  address: '{address}'\n  port: 8000\nbase_url: /hub1/\n")
    files = render(paths, registry)
    bind_url = json.loads(files[paths.hub_json].content)["config"]["JupyterHub"]["bind_url"]
    assert bind_url == f"http://{host}:8000/hub1/"
    parsed = urlsplit(bind_url)
    assert (parsed.hostname or "", parsed.port) == (address, 8000)
    # the hub hands it to the proxy class as public_url: accepted as it is
    assert TraefikFileProviderProxy(public_url=bind_url).public_url == bind_url
    static = tomlkit.loads(files[paths.traefik_toml].content.decode()).unwrap()
    assert static["entryPoints"]["http"]["address"] == f"{host}:8000"
    # with HTTPS, both entry points listen on the same address
    write_config(paths, f"http:\n  address: '{address}'\nhttps:\n  enabled: true\n"
                        "  self_signed: true\n")
    static = tomlkit.loads(render(paths, registry)[paths.traefik_toml].content.decode()).unwrap()
    assert static["entryPoints"]["http"]["address"] == f"{host}:443"
    assert static["entryPoints"]["http-redirect"]["address"] == f"{host}:80"


# ----------------------------------------------------------------- render is pure


def tree(root) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mode, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_render_opens_no_file_and_makes_no_key(paths, registry, tmp_path):
    """Everything render looks at is read beforehand into ctx.inputs; without it, render
    names the file instead of opening it; with https.self_signed and no pair on disk yet
    (a dry run before the first reload), nothing is generated or written."""
    (tmp_path / "db-url").write_text("sqlite:////srv/hub.sqlite\n")
    write_config(paths, "hub:\n  db_url: file:" + str(tmp_path / "db-url") + "\n"
                        "https:\n  enabled: true\n  self_signed: true\n")
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    from hardway.errors import HardwayError
    from hardway.render import render_all

    with pytest.raises(HardwayError, match=r"db-url was not read before rendering"):
        render_all(settings, registry, ctx)
    before = tree(tmp_path)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    assert tree(tmp_path) == before
    assert not paths.self_signed_cert.exists()
    dynamic = tomlkit.loads(files[paths.rules_dir / "00-hardway.toml"].content.decode())
    assert "certificates" not in dynamic.unwrap()["tls"]  # made at reload, not here
    hub = json.loads(files[paths.hub_json].content)["config"]
    assert hub["JupyterHub"]["db_url"] == "sqlite:////srv/hub.sqlite"
    assert ctx.inputs[tmp_path / "db-url"] == b"sqlite:////srv/hub.sqlite\n"


def test_render_gets_no_system(paths, registry, monkeypatch):
    """Render receives values, never the means to act on the machine."""
    seen = []
    choice = registry.selected(load_settings(paths, registry))["spawner"]
    original = type(choice).render

    def spy(self, settings, ctx):
        seen.append(ctx.system)
        return original(self, settings, ctx)

    monkeypatch.setattr(type(choice), "render", spy)
    settings = load_settings(paths, registry)
    render_now(settings, registry, Context(paths, {"proxy_api_hash": "h"}, system=object(),
                                           pm=registry.pm))
    assert seen == [None]
