from __future__ import annotations

import re

from hardway_plugins.spawner.systemd import unix_name

VALID = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def test_plain_names_get_the_prefix():
    assert unix_name("alice") == "jupyter-alice"


def test_numeric_lms_ids_stay_names():
    assert unix_name("00123") == "jupyter-00123"
    assert unix_name("123") != unix_name("00123")


def test_unsafe_and_long_names_are_valid_and_distinct():
    names = ["a.b", "a_b", "a-b", "A-b", "alice@example.edu", "alice+x@example.edu",
             "x" * 40, "x" * 41, "élodie", "a b"]
    mapped = [unix_name(n) for n in names]
    for n, m in zip(names, mapped, strict=True):
        assert VALID.fullmatch(m), (n, m)
    assert len(set(mapped)) == len(mapped)


def test_is_stable():
    assert unix_name("alice@example.edu") == unix_name("alice@example.edu")
