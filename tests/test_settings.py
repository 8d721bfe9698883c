from __future__ import annotations

import copy

import pytest
from conftest import write_config

from hardway.errors import ConfigError
from hardway.plugins import load_settings
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
    from hardway.plugins import Registry, make_manager

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
