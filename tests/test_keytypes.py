from __future__ import annotations

import pytest

from hardway.settings import keytypes as kt


def test_string_keeps_leading_zeros_from_the_command_line():
    assert kt.Str().parse("0123") == "0123"


def test_yaml_integer_for_a_string_key_is_refused_with_a_hint():
    with pytest.raises(kt.BadValue, match="quote it"):
        kt.Str().check(123)


@pytest.mark.parametrize("text, value", [("true", True), ("No", False), ("on", True),
                                         ("0", False)])
def test_bool_words(text, value):
    assert kt.Bool().parse(text) is value


@pytest.mark.parametrize("bad", ["maybe", "", "2"])
def test_bool_refuses_other_words(bad):
    with pytest.raises(kt.BadValue, match="true or false"):
        kt.Bool().parse(bad)


def test_bool_from_yaml_must_be_a_boolean():
    with pytest.raises(kt.BadValue, match="got a string"):
        kt.Bool().check("yes")


def test_int_bounds_and_spelling():
    t = kt.Int(1, 65535)
    assert t.parse("8080") == 8080
    for bad in ("0", "70000", "80.5", "eighty", "0x50"):
        with pytest.raises(kt.BadValue, match="from 1 to 65535"):
            t.parse(bad)
    with pytest.raises(kt.BadValue):
        t.check(True)


def test_float_refuses_nan_and_non_positive():
    t = kt.Float(min=0)
    assert t.parse("1.5") == 1.5
    for bad in ("nan", "inf", "0", "-1", "x"):
        with pytest.raises(kt.BadValue):
            t.parse(bad)


def test_memory_sizes():
    t = kt.Memory()
    assert t.parse("512M") == "512M"
    for bad in ("512MB", "0G", "-1G", "1.5G", "lots"):
        with pytest.raises(kt.BadValue, match="512M or 2G"):
            t.parse(bad)


def test_list_from_command_line_is_comma_separated_and_items_checked():
    t = kt.ListOf(kt.USERNAME)
    assert t.parse("alice, bob") == ["alice", "bob"]
    assert t.parse("") == []
    with pytest.raises(kt.BadValue, match="item 2"):
        t.check(["alice", "b o b"])
    with pytest.raises(kt.BadValue, match="got a string"):
        t.check("alice")


def test_numeric_user_ids_stay_strings():
    assert kt.ListOf(kt.USERNAME).parse("00123,456") == ["00123", "456"]


def test_one_of_names_the_choices():
    with pytest.raises(kt.BadValue, match="one of jupyterlab, classic"):
        kt.OneOf("jupyterlab", "classic").parse("vscode")


def test_url_and_base_url():
    assert kt.Url().parse("https://lms.example.edu/jwks")
    with pytest.raises(kt.BadValue, match="URL"):
        kt.Url().parse("lms.example.edu/jwks")
    assert kt.BaseUrl().parse("/jupyter/") == "/jupyter/"
    with pytest.raises(kt.BadValue, match="starting and ending with /"):
        kt.BaseUrl().parse("/jupyter")


def test_map_of():
    t = kt.MapOf(kt.Str())
    assert t.parse("key1=secret1,key2=secret2") == {"key1": "secret1", "key2": "secret2"}
    with pytest.raises(kt.BadValue, match="NAME=VALUE"):
        t.parse("novalue")
    with pytest.raises(kt.BadValue, match="key1"):
        t.check({"key1": 5})


@pytest.mark.parametrize("text, value", [
    ("", ""), ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("::", "::"),
    ("::1", "::1"), ("2001:DB8:0::1", "2001:db8::1"), ("::ffff:192.0.2.1", "::ffff:c000:201"),
])
def test_ip_address_takes_v4_v6_or_empty_in_canonical_form(text, value):
    assert kt.IPAddress().parse(text) == value


@pytest.mark.parametrize("bad", ["not-an-ip", "[::1]", "localhost", "1.2.3", "256.1.1.1",
                                 "127.0.0.1:80", "::1/128", "fe80::1%eth0", " 127.0.0.1",
                                 "01.2.3.4"])
def test_ip_address_refuses_everything_else_naming_the_form(bad):
    with pytest.raises(kt.BadValue, match=r"IPv4 or IPv6 address such as 127\.0\.0\.1") as e:
        kt.IPAddress().parse(bad)
    assert repr(bad) in str(e.value)


def test_ip_address_from_yaml_must_be_text():
    with pytest.raises(kt.BadValue, match="got an integer"):
        kt.IPAddress().check(127)


@pytest.mark.parametrize("address, port, out", [
    ("", 80, ":80"), ("127.0.0.1", 8000, "127.0.0.1:8000"), ("::", 80, "[::]:80"),
    ("::1", 80, "[::1]:80"), ("2001:db8::1", 443, "[2001:db8::1]:443"),
])
def test_host_port_brackets_ipv6(address, port, out):
    assert kt.host_port(address, port) == out
