from __future__ import annotations

import copy

import pytest
from conftest import write_config

from hardway.errors import ConfigError
from hardway.plugin.manager import load_settings
from hardway.settings import Layer, merge


def test_defaults_with_their_origin(paths, registry):
    s = load_settings(paths, registry)
    assert s["auth.type"] == "firstuse"
    assert s.origins["auth.type"] == "default"
    assert s["auth.firstuse.min_password_length"] == 8
    assert s.origins["auth.firstuse.min_password_length"] == "default (firstuse)"


def test_layers_in_order_with_file_and_line(paths, registry):
    write_config(paths, "# mine\nhttp:\n  port: 8000\nlimits:\n  memory: 1G\n")
    write_config(paths, "limits:\n  memory: 2G\n", "50-site.yaml")
    write_config(paths, "limits:\n  memory: 3G\n", "10-first.yaml")
    s = load_settings(paths, registry)
    assert s["http.port"] == 8000
    assert s.origins["http.port"] == f"{paths.config_file}:3"
    assert s["limits.memory"] == "2G"  # name order: 10-first, then 50-site
    assert s.origins["limits.memory"].startswith(str(paths.config_d / "50-site.yaml"))


def test_merge_never_changes_a_layer():
    from hardway.plugin.manager import Registry, make_manager

    decl = Registry(make_manager(load_entrypoints=False)).declarations()
    layer = Layer("a", {"users.admin": ["alice"]})
    snapshot = copy.deepcopy(dict(layer.values))
    s = merge(decl, [layer])
    s.values["users.admin"].append("mallory")  # even mutating the result...
    assert dict(layer.values) == snapshot  # ...leaves the layer as it was
    assert merge(decl, [])["users.admin"] == []  # and the defaults too


def test_unknown_key_suggests_the_close_one(paths, registry):
    write_config(paths, "http:\n  prot: 80\n")
    with pytest.raises(ConfigError, match=r"line 2.*unknown key 'http.prot'.*http.port"):
        load_settings(paths, registry)


def test_key_of_a_plugin_that_is_not_installed(paths, registry):
    write_config(paths, "auth:\n  lti99:\n    client_id: abc\n")
    with pytest.raises(ConfigError, match="is the plugin missing"):
        load_settings(paths, registry)


def test_wrong_type_names_file_line_key_and_form(paths, registry):
    write_config(paths, "http:\n  port: eighty\n")
    with pytest.raises(ConfigError) as e:
        load_settings(paths, registry)
    msg = str(e.value)
    assert str(paths.config_file) in msg and "line 2" in msg and "http.port" in msg
    assert "from 1 to 65535" in msg


def test_broken_yaml_names_the_line(paths, registry):
    write_config(paths, "http:\n  port: [80\n", "20-broken.yaml")
    with pytest.raises(ConfigError, match=r"20-broken.yaml, line \d+: not valid YAML"):
        load_settings(paths, registry)


def test_section_given_a_scalar(paths, registry):
    write_config(paths, "auth: github\n")
    with pytest.raises(ConfigError, match="auth is a section"):
        load_settings(paths, registry)


def test_unknown_auth_type_lists_installed(paths, registry):
    write_config(paths, "auth:\n  type: lti42\n")
    with pytest.raises(ConfigError,
                       match=r"no auth plugin named 'lti42'.*Installed: dummy, firstuse, gen"):
        load_settings(paths, registry)


def test_top_level_must_be_a_mapping(paths, registry):
    write_config(paths, "- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(paths, registry)


def test_empty_file_is_fine(paths, registry):
    write_config(paths, "# nothing yet\n")
    assert load_settings(paths, registry)["http.port"] == 80


def test_a_whole_mapping_cannot_come_from_a_file(paths, registry):
    # it used to pass here and crash `hardway lti` and `reload` (a str where a dict goes)
    write_config(paths, "auth:\n  type: lti11\n  lti11:\n    consumers: file:/etc/hostname\n")
    with pytest.raises(ConfigError) as e:
        load_settings(paths, registry)
    msg = str(e.value)
    assert "line 4" in msg and "auth.lti11.consumers" in msg and "'file:/etc/hostname'" in msg
    assert "each value may be file:/abs/path instead" in msg and "\n" not in msg


def test_file_per_value_of_a_mapping_and_for_a_string_secret(paths, registry, tmp_path):
    write_config(paths, "auth:\n  type: lti11\n  lti11:\n    consumers:\n"
                        "      canvas: file:/etc/hardway/canvas-secret\n"
                        "hub:\n  db_url: file:/etc/hardway/db-url\n")
    s = load_settings(paths, registry)
    assert s["auth.lti11.consumers"] == {"canvas": "file:/etc/hardway/canvas-secret"}
    assert s["hub.db_url"] == "file:/etc/hardway/db-url"


def test_file_refused_for_any_non_string_secret():
    from hardway.settings import Key, check_secret_file
    from hardway.settings import keytypes as kt

    for key_type, hint in ((kt.ListOf(kt.Str()), "each item may be file:/abs/path"),
                           (kt.MapOf(kt.Str()), "each value may be file:/abs/path"),
                           (kt.Int(), "give a whole number itself")):
        key = Key("x.y", key_type, None, "", secret=True)
        with pytest.raises(kt.BadValue, match=hint):
            check_secret_file("file:/etc/x", key)
    assert check_secret_file("file:/etc/x", Key("x.y", kt.Url(), None, "", secret=True))


def test_http_address_must_be_an_ip_address(paths, registry):
    write_config(paths, "http:\n  address: not-an-ip\n")
    with pytest.raises(ConfigError, match=r"line 2: http\.address: expected an IPv4 or IPv6 "
                                          r"address.*got 'not-an-ip'"):
        load_settings(paths, registry)
    write_config(paths, "http:\n  address: '2001:DB8::1'\n")
    assert load_settings(paths, registry)["http.address"] == "2001:db8::1"


def test_file_per_value_must_be_an_absolute_path(paths, registry):
    write_config(paths, "auth:\n  lti11:\n    consumers:\n      canvas: file:canvas-secret\n")
    with pytest.raises(ConfigError, match=r"auth\.lti11\.consumers: canvas: file: must be "
                                          "followed by an absolute path"):
        load_settings(paths, registry)
