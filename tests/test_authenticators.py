"""Each authenticator plugin: its keys, its refusals, and a rendered hub config that
JupyterHub's own classes accept (hardway.ops.hubcheck, against the installed packages).
The live flows against real identity providers are in integration-tests/."""

from __future__ import annotations

import json

import pytest
from conftest import write_config

from hardway.cli.main import main
from hardway.errors import ConfigError
from hardway.ops.hubcheck import problems
from hardway.ops.install import render_now
from hardway.plugin.contract import Context
from hardway.plugin.manager import load_settings

CONFIGS = {
    "firstuse": "",
    "dummy": "  dummy:\n    password: demo-pass\n    allow_insecure: true\n",
    "native": "  native:\n    open_signup: false\n",
    "pam": "  pam:\n    allowed_groups: [students]\n",
    "lti11": "  lti11:\n    consumers:\n      canvas-key: canvas-secret\n",
    "lti13": ("  lti13:\n    issuer: https://canvas.instructure.com\n"
              "    client_id: ['0123000000000042']\n"
              "    authorize_url: https://lms.example.edu/api/lti/authorize_redirect\n"
              "    jwks_url: https://lms.example.edu/api/lti/security/jwks\n"),
    "generic": ("  generic:\n    client_id: hub\n    client_secret: s3cret\n"
                "    authorize_url: https://id.example.edu/auth\n"
                "    token_url: https://id.example.edu/token\n"
                "    userdata_url: https://id.example.edu/userinfo\n"
                "    groups_claim: groups\n    allowed_groups: [students]\n"
                "    admin_groups: [staff]\n"),
    "github": ("  github:\n    client_id: abc\n    client_secret: def\n"
               "    allowed_organizations: [jupyterhub, 'jupyterhub:team']\n"),
    "ldap": ("  ldap:\n    server: ldap.example.edu\n"
             "    bind_dn_template: ['uid={username},ou=people,dc=example,dc=edu']\n"
             "    allowed_groups: ['cn=students,ou=groups,dc=example,dc=edu']\n"),
}


def hub_config(paths, registry, name: str) -> dict:
    write_config(paths, f"public_url: https://hub.example.edu/\nauth:\n  type: {name}\n"
                        + CONFIGS[name])
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    return json.loads(files[paths.hub_json].content)["config"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rendered_config_is_accepted_by_jupyterhub_classes(paths, registry, name):
    config = hub_config(paths, registry, name)
    assert problems(config) == []


def test_allow_all_is_explicit_per_authenticator(paths, registry):
    allow = {n: hub_config(paths, registry, n)["Authenticator"].get("allow_all")
             for n in CONFIGS}
    # the launch, the approval, the directory or the shared password is the gate
    assert allow["lti11"] is allow["lti13"] is allow["native"] is allow["dummy"] is True
    # groups or organisations restrict these, so no allow_all
    assert allow["ldap"] is None and allow["generic"] is None and allow["github"] is None
    assert allow["pam"] is None and allow["firstuse"] is None


def test_lti13_without_jwks_url_is_refused_naming_the_key(paths, registry, capsys,
                                                          monkeypatch):
    monkeypatch.setenv("HARDWAY_ROOT", str(paths.root))
    write_config(paths, "auth:\n  lti13:\n    issuer: https://canvas.instructure.com\n"
                        "    client_id: ['42']\n"
                        "    authorize_url: https://lms.example.edu/authorize\n")
    before = paths.config_file.read_bytes()
    assert main(["config", "set", "auth.type", "lti13"]) == 2
    err = capsys.readouterr().err
    assert "auth.lti13.jwks_url is required when auth.type is lti13" in err
    assert paths.config_file.read_bytes() == before


def test_lti13_refuses_plain_http_endpoints(paths, registry):
    write_config(paths, "auth:\n  type: lti13\n" + CONFIGS["lti13"].replace(
        "https://lms.example.edu/api/lti/security", "http://lms.example.edu/api/lti/security"))
    with pytest.raises(ConfigError, match=r"auth\.lti13\.jwks_url.*must use https"):
        load_settings(paths, registry)


def test_dummy_must_be_asked_for_explicitly(paths, registry):
    write_config(paths, "auth:\n  type: dummy\n  dummy:\n    password: x\n")
    with pytest.raises(ConfigError, match="allow_insecure"):
        load_settings(paths, registry)
    config = hub_config(paths, registry, "dummy")
    assert "dummy authenticator" in config["JupyterHub"]["template_vars"]["announcement"]


def test_oauth_needs_the_public_url_and_a_groups_claim(paths, registry):
    write_config(paths, "auth:\n  type: github\n" + CONFIGS["github"])
    with pytest.raises(ConfigError, match="public_url is required"):
        load_settings(paths, registry)
    config = hub_config(paths, registry, "generic")["GenericOAuthenticator"]
    assert config["oauth_callback_url"] == "https://hub.example.edu/hub/oauth_callback"
    assert config["enable_pkce"] is True and config["manage_groups"] is True
    write_config(paths, "public_url: https://hub.example.edu/\nauth:\n  type: generic\n"
                 + CONFIGS["generic"].replace("    groups_claim: groups\n", ""))
    with pytest.raises(ConfigError, match="groups_claim is required"):
        load_settings(paths, registry)


def test_pam_runs_servers_as_the_account_itself(paths, registry):
    config = hub_config(paths, registry, "pam")
    assert config["HardwaySystemdSpawner"]["user_prefix"] == ""
    assert config["HardwaySystemdSpawner"]["existing_users_only"] is True
    assert config["PAMAuthenticator"]["allowed_groups"] == ["students"]


def test_lti_secrets_are_masked_and_may_come_from_files(paths, registry, capsys,
                                                        monkeypatch, tmp_path):
    monkeypatch.setenv("HARDWAY_ROOT", str(paths.root))
    secret = tmp_path / "canvas-secret"
    secret.write_text("from-a-file\n")
    write_config(paths, f"auth:\n  type: lti11\n  lti11:\n    consumers:\n"
                        f"      canvas-key: file:{secret}\n")
    assert main(["config", "show", "auth.lti11"]) == 0
    out = capsys.readouterr().out
    assert "auth.lti11.consumers = ********" in out and "from-a-file" not in out
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["LTI11Authenticator"]["consumers"] == {"canvas-key": "from-a-file"}


def test_lti_authenticators_keep_used_nonces_in_the_hubs_state(paths, registry):
    for name, cls in (("lti11", "HardwayLTI11Authenticator"),
                      ("lti13", "HardwayLTI13Authenticator")):
        config = hub_config(paths, registry, name)
        assert (config["JupyterHub"]["authenticator_class"]
                == f"hardway_plugins.auth.lti_checks.{cls}")
        assert config[cls]["nonce_db_path"] == str(paths.hub_dir / "lti-nonces.sqlite")
    assert config["HardwayLTI13Authenticator"]["deployment_ids"] == []  # any deployment


def test_lti13_deployment_ids_are_rendered_and_printed(paths, registry, capsys, monkeypatch):
    monkeypatch.setenv("HARDWAY_ROOT", str(paths.root))
    write_config(paths, "public_url: https://hub.example.edu/\nauth:\n  type: lti13\n"
                 + CONFIGS["lti13"])
    assert main(["lti"]) == 0
    out = capsys.readouterr().out
    assert "deployment ids allowed: any" in out
    # grades: the tool's key for the LMS to register, and the platform's token URL
    assert "public JWK URL (the tool's key, for grades): https://hub.example.edu/hub/" \
        "lti13/jwks" in out
    assert "token URL (grades): not set: no grades are sent" in out
    assert main(["config", "set", "auth.lti13.token_url", "http://lms.example.edu/t"]) == 2
    assert "auth.lti13.token_url: 'http://lms.example.edu/t' must use https://" in \
        capsys.readouterr().err
    assert main(["config", "set", "auth.lti13.deployment_ids", "42:abc,00017"]) == 0
    settings = load_settings(paths, registry)
    assert settings["auth.lti13.deployment_ids"] == ["42:abc", "00017"]  # text, zeros kept
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["HardwayLTI13Authenticator"]["deployment_ids"] == ["00017", "42:abc"]
    assert problems(config) == []
    capsys.readouterr()
    assert main(["lti"]) == 0
    assert "deployment ids allowed: 00017, 42:abc" in capsys.readouterr().out


def test_lti11_consumer_secrets_from_files_per_consumer(paths, registry, capsys, monkeypatch,
                                                        tmp_path):
    monkeypatch.setenv("HARDWAY_ROOT", str(paths.root))
    (tmp_path / "moodle").write_text("moodle-secret\n")
    write_config(paths, "public_url: https://hub.example.edu/\nauth:\n  type: lti11\n"
                 + CONFIGS["lti11"])
    before = paths.config_file.read_bytes()
    # the whole mapping cannot be one file: refused by name, nothing written
    assert main(["config", "set", "auth.lti11.consumers", f"file:{tmp_path}/moodle"]) == 2
    assert "auth.lti11.consumers" in capsys.readouterr().err
    assert paths.config_file.read_bytes() == before
    assert main(["config", "set", "auth.lti11.consumers",
                 f"canvas-key=canvas-secret,moodle-key=file:{tmp_path}/moodle"]) == 0
    assert main(["lti"]) == 0
    assert "consumer keys: canvas-key, moodle-key" in capsys.readouterr().out
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["LTI11Authenticator"]["consumers"] == {"canvas-key": "canvas-secret",
                                                         "moodle-key": "moodle-secret"}
    (tmp_path / "moodle").write_text("\n")  # an empty secret would let anyone sign
    with pytest.raises(ConfigError, match=r"auth\.lti11\.consumers: the secret of moodle-key "
                                          r"is empty"):
        render_now(settings, registry, ctx)
    (tmp_path / "moodle").unlink()
    with pytest.raises(ConfigError, match=r"auth\.lti11\.consumers: moodle-key: cannot read"):
        render_now(settings, registry, ctx)


def test_lti11_consumers_that_are_not_a_mapping_are_refused_not_crashed_on(registry):
    """However a file: string reaches the plugin (the settings layer refuses it for a
    mapping key), `hardway lti` and reload say what to do instead of crashing."""
    from hardway_plugins.auth.lti import Lti11, lms_instructions

    from hardway.settings import Layer, merge

    settings = merge(registry.declarations(), [Layer("test", {
        "public_url": "https://hub.example.edu/", "auth.type": "lti11",
        "auth.lti11.consumers": "file:/etc/hardway/consumers"})])
    for call in (lambda: Lti11().validate(settings), lambda: lms_instructions(settings)):
        with pytest.raises(ConfigError, match=r"auth\.lti11\.consumers: expected a mapping"
                                              r".*canvas-key=file:/"):
            call()
    settings = merge(registry.declarations(), [Layer("test", {
        "auth.type": "lti11", "auth.lti11.consumers": {"k": "file:relative/path"}})])
    with pytest.raises(ConfigError, match="absolute path"):
        registry.validate(settings)


def test_hardway_lti_prints_what_the_lms_needs(paths, capsys, monkeypatch):
    monkeypatch.setenv("HARDWAY_ROOT", str(paths.root))
    write_config(paths, "public_url: https://hub.example.edu/\nauth:\n  type: lti13\n"
                 + CONFIGS["lti13"])
    assert main(["lti"]) == 0
    out = capsys.readouterr().out
    assert "https://hub.example.edu/hub/lti13/oauth_login" in out
    assert "https://hub.example.edu/hub/lti13/oauth_callback" in out
    write_config(paths, "auth:\n  type: lti11\n" + CONFIGS["lti11"])
    assert main(["lti"]) == 2
    assert "public_url is not set" in capsys.readouterr().err


def test_native_login_handler_works_on_jupyterhub_6():
    """nativeauthenticator 1.3.0 times logins with handler.statsd, gone in JupyterHub 6."""
    from hardway_plugins.auth.native_compat import _with_statsd
    from nativeauthenticator.handlers import LoginHandler

    handler = _with_statsd(LoginHandler)
    assert issubclass(handler, LoginHandler) and handler.__name__ == "LoginHandler"
    timer = handler.statsd.timer("login.authenticate").start()
    assert timer.stop(send=False) is None


def test_github_organisations_and_teams(paths, registry):
    """GitHub's live login flow cannot run here: github.com is unreachable from these
    machines (no route beyond the package registries) and no local stand-in speaks its
    OAuth + org API faithfully. What runs: the rendered config, checked against
    oauthenticator's own GitHubOAuthenticator class, and the refusals."""
    write_config(paths, "public_url: https://hub.example.edu/\nauth:\n  type: github\n"
                 "  github:\n    client_id: abc\n    client_secret: def\n"
                 "    allowed_organizations: [stat-dept, 'stat-dept:ta-team']\n")
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "$2b$04$x"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    config = json.loads(files[paths.hub_json].content)["config"]
    gh = config["GitHubOAuthenticator"]
    assert gh["allowed_organizations"] == ["stat-dept", "stat-dept:ta-team"]
    assert gh["scope"] == ["read:org"]  # needed to see org and team membership
    assert gh["oauth_callback_url"] == "https://hub.example.edu/hub/oauth_callback"
    assert config["JupyterHub"]["authenticator_class"] == "github"
    assert problems(config) == []
    write_config(paths, "public_url: https://hub.example.edu/\nauth:\n  type: github\n"
                 "  github:\n    client_id: abc\n    client_secret: def\n"
                 "    allowed_organizations: ['not an org']\n")
    with pytest.raises(ConfigError, match=r"auth\.github\.allowed_organizations"):
        load_settings(paths, registry)
