"""`hardway config` verbs, and what bad input does (exit 2, one message, files untouched)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fill
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardway.cli.main import main
from hardway.plugin.manager import Registry, make_manager
from hardway.settings import keytypes as kt

CONFIG = """\
# Course hub for STAT101 -- ask Jo before changing
users:
  admin: [alice]   # instructor
limits:
  memory: 1G
"""


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDWAY_ROOT", str(tmp_path))
    etc = tmp_path / "etc" / "hardway"
    (etc / "config.d").mkdir(parents=True)
    (etc / "config.yaml").write_text(CONFIG)
    (etc / "config.d" / "50-site.yaml").write_text("# site policy\nlimits:\n  cpu: 2.0\n")
    return tmp_path


def run(*argv: str) -> int:
    return main(list(argv))


def digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".lock":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_set_get_show_origin_unset(root, capsys):
    assert run("config", "set", "auth.firstuse.min_password_length", "12") == 0
    assert run("config", "get", "auth.firstuse.min_password_length") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "12"
    assert run("config", "show", "limits", "--origin") == 0
    out = capsys.readouterr().out
    assert "limits.cpu = 2.0    [" in out and "50-site.yaml:3]" in out
    assert "limits.memory = 1G    [" in out and "config.yaml:5]" in out
    text = (root / "etc/hardway/config.yaml").read_text()
    assert "# Course hub for STAT101 -- ask Jo before changing" in text
    assert "# instructor" in text
    assert run("config", "unset", "auth.firstuse.min_password_length") == 0
    assert (root / "etc/hardway/config.yaml").read_text() == CONFIG


def test_set_keeps_strings_strings(root, capsys):
    assert run("config", "add-item", "users.allowed", "0123") == 0
    assert run("config", "get", "users.allowed") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0123"
    assert "'0123'" in (root / "etc/hardway/config.yaml").read_text()


def test_set_warns_when_a_drop_in_wins(root, capsys):
    assert run("config", "set", "limits.cpu", "1") == 0
    err = capsys.readouterr().err
    assert "also set in" in err and "50-site.yaml" in err and "effective value is 2.0" in err


def test_dry_run_prints_the_diff_and_writes_nothing(root, capsys):
    before = digest(root)
    assert run("config", "set", "limits.memory", "4G", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "-  memory: 1G" in out and "+  memory: 4G" in out
    assert digest(root) == before


def test_list_verbs(root, capsys):
    assert run("config", "add-item", "users.admin", "bob") == 0
    assert run("config", "add-item", "users.admin", "bob") == 0
    assert "already in users.admin" in capsys.readouterr().out
    assert run("config", "remove-item", "users.admin", "alice") == 0
    assert run("config", "get", "users.admin") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "bob"


def test_concurrent_add_item_loses_nothing(root):
    env = {**os.environ, "HARDWAY_ROOT": str(root)}
    procs = [subprocess.Popen([sys.executable, "-m", "hardway.cli.main", "config", "add-item",
                               "users.allowed", f"user{i:02d}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(20)]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    from hardway.settings.configfile import ConfigDoc

    allowed = ConfigDoc(root / "etc/hardway/config.yaml").get("users.allowed")
    assert sorted(allowed) == [f"user{i:02d}" for i in range(20)]


# ------------------------------------------------------------------ bad input, generated

REGISTRY = Registry(make_manager(load_entrypoints=False))
DECL = REGISTRY.declarations()
KEYS = sorted(DECL.keys)


def bad_text_for(key_type: kt.KeyType) -> st.SearchStrategy[str]:
    """Command-line text that the type must refuse."""
    words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz !?#", min_size=1, max_size=12)

    def refused(text: str) -> bool:
        try:
            key_type.parse(text)
        except kt.BadValue:
            return True
        return False

    return st.one_of(words, st.sampled_from(["-1", "0x10", "1e999", "nan", "", " ", "a,b c",
                                             "http//x", "/no/slash", "9999999"]),
                     st.integers().map(str)).filter(refused)


typed_keys = [k for k in KEYS if not isinstance(DECL.keys[k].type, (kt.Str,))
              or isinstance(DECL.keys[k].type, (kt.OneOf, kt.Name, kt.Memory, kt.Url,
                                                kt.BaseUrl, kt.IPAddress))
              or DECL.keys[k].type.pattern is not None]


@st.composite
def bad_command(draw: st.DrawFn) -> tuple[list[str], str]:
    kind = draw(st.sampled_from(["wrong type", "unknown key", "missing plugin",
                                 "broken yaml", "bad yaml value", "not a list"]))
    if kind == "wrong type":
        key = draw(st.sampled_from(typed_keys))
        return ["config", "set", key, draw(bad_text_for(DECL.keys[key].type))], key
    if kind == "unknown key":
        name = draw(st.from_regex(r"[a-z]{2,8}(\.[a-z_]{2,8}){0,2}", fullmatch=True))
        if name in DECL.keys or name in DECL.sections:
            name += ".zz"
        return ["config", "set", name, "1"], name
    if kind == "missing plugin":
        plugin = draw(st.sampled_from(["lti13", "ldap", "github", "docker", "nginx"]))
        kind_ = draw(st.sampled_from(["auth", "spawner", "proxy"]))
        return ["config", "set", f"{kind_}.{plugin}.url", "x"], f"{kind_}.{plugin}"
    if kind == "not a list":
        key = draw(st.sampled_from([k for k in KEYS
                                    if not isinstance(DECL.keys[k].type, kt.ListOf)]))
        return ["config", "add-item", key, "x"], key
    # files an admin broke by hand: every verb that reads them must say where (a `set`
    # of the very key that is broken would rightly repair it, so set another one)
    verb = draw(st.sampled_from([["config", "show"], ["config", "validate"],
                                 ["config", "get", "http.port"],
                                 ["config", "set", "KEY", "VALUE"]]))
    target = draw(st.sampled_from(["config.yaml", "config.d/50-site.yaml"]))
    if kind == "broken yaml":
        text = draw(st.sampled_from(["users: [alice\n", "a: b: c\n", "limits:\n\tmemory: 1G\n",
                                     "x: 'open\n", "- [\n"]))
    else:
        key = draw(st.sampled_from(typed_keys))
        top, _, rest = key.partition(".")
        value = draw(st.sampled_from(["[1, 2]", "{a: 1}", "'not-it'", "12.5.1", "yes please"]))
        text = f"{top}:\n  {rest}: {value}\n" if rest else f"{top}: {value}\n"
        if verb[2:] == ["KEY", "VALUE"]:
            verb = ["config", "set", *(["base_url", "/x/"] if key != "base_url"
                                       else ["http.port", "8080"])]
        try:  # only values the key's type refuses
            DECL.flatten(__import__("hardway.settings").settings.parse_yaml(text, "t"), "t")
            return ["config", "set", "http.port", "http"], "http.port"
        except Exception:
            pass
    if verb[2:] == ["KEY", "VALUE"]:
        verb = ["config", "set", "http.port", "8080"]
    return [*verb, f"@{target}:{text}"], target


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much,
                                 HealthCheck.too_slow])
@given(case=bad_command())
def test_bad_input_gets_one_message_exit_2_and_no_change(root, capsys, case):
    argv, names = case
    capsys.readouterr()
    if argv[-1].startswith("@"):
        target, _, text = argv[-1][1:].partition(":")
        argv = argv[:-1]
        path = root / "etc/hardway" / target
        original = path.read_text()
        path.write_text(text)
    else:
        path, original = None, None
    try:
        before = digest(root)
        code = run(*argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert lines and lines[0].startswith("hardway: error: "), err
        assert "Traceback" not in err
        assert names in err, (names, err)
        if path is not None:
            assert "line " in err, err
        assert digest(root) == before
    finally:
        if path is not None:
            path.write_text(original)


def test_several_keys_change_together_or_not_at_all(root, capsys):
    config = root / "etc" / "hardway" / "config.yaml"
    # alone, either key leaves https without a valid source; together they are fine
    assert run("config", "set", "https.enabled", "true") == 2
    assert "no certificate source" in capsys.readouterr().err
    assert run("config", "set", "https.enabled", "true", "https.self_signed", "true") == 0
    text = config.read_text()
    assert "enabled: true" in text and "self_signed: true" in text
    before = config.read_bytes()
    assert run("config", "set", "https.port", "8443", "https.hsts", "maybe") == 2
    assert "https.hsts" in capsys.readouterr().err
    assert run("config", "set", "https.port", "8443", "https.hsts") == 2
    assert "'https.hsts' has no value" in capsys.readouterr().err
    assert config.read_bytes() == before
    assert run("config", "unset", "https.enabled", "https.self_signed") == 0
    assert "https" not in config.read_text()


# ------------------------------------------------------------------ secrets in files, addresses


def one_error(capsys, *needles: str) -> str:
    """The single line on stderr; it holds every needle."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hardway: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def test_a_mapping_secret_refuses_a_whole_file(root, capsys, tmp_path):
    secret = tmp_path / "consumers"
    secret.write_text("key=secret\n")
    before = digest(root)
    assert run("config", "set", "auth.lti11.consumers", f"file:{secret}") == 2
    one_error(capsys, "auth.lti11.consumers", f"'file:{secret}'",
              "each value may be file:/abs/path instead")
    assert digest(root) == before
    # per value it is fine, and the file each value names is checked like any other
    assert run("config", "set", "auth.lti11.consumers", f"canvas=file:{secret}") == 0
    from hardway.settings.configfile import ConfigDoc

    doc = ConfigDoc(root / "etc/hardway/config.yaml")
    assert doc.get("auth.lti11.consumers") == {"canvas": f"file:{secret}"}
    before = digest(root)
    assert run("config", "set", "auth.lti11.consumers", "canvas=file:/nonexistent/x") == 2
    one_error(capsys, "auth.lti11.consumers: canvas: file:/nonexistent/x", "does not exist")
    assert digest(root) == before


@pytest.mark.parametrize("value, says", [
    ("file:/nonexistent/db-url", "/nonexistent/db-url does not exist"),
    ("file:{tmp}", "is not a regular file"),
    ("file:relative/db-url", "file: must be followed by an absolute path"),
    ("file:{tmp}/latin1", "is not UTF-8 text"),
])
def test_a_string_secret_file_must_be_there_and_readable(root, capsys, tmp_path, value, says):
    (tmp_path / "latin1").write_bytes(b"postgresql://hub:p\xe4ss@db/hub\n")
    value = value.format(tmp=tmp_path)
    before = digest(root)
    assert run("config", "set", "hub.db_url", value) == 2
    one_error(capsys, "hub.db_url", says)
    assert digest(root) == before


def test_a_string_secret_file_that_is_there(root, capsys, tmp_path):
    secret = tmp_path / "db-url"
    secret.write_text("postgresql://hub:s3cret@127.0.0.1/hub\n")
    assert run("config", "set", "hub.db_url", f"file:{secret}") == 0
    assert "s3cret" not in capsys.readouterr().out
    assert f"file:{secret}" in (root / "etc/hardway/config.yaml").read_text()


def test_http_address_is_an_ip_address(root, capsys):
    assert run("config", "set", "http.address", "::") == 0
    assert run("config", "get", "http.address") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "::"
    before = digest(root)
    for bad in ("not-an-ip", "[::1]", "localhost"):
        assert run("config", "set", "http.address", bad) == 2
        one_error(capsys, "http.address", repr(bad), "IPv4 or IPv6 address")
    assert digest(root) == before


# ------------------------------------------------------------------ a full disk


def test_a_full_disk_gets_one_line_and_leaves_config_yaml_as_it_was(
        small_fs, tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    etc = root / "etc" / "hardway"
    etc.symlink_to(small_fs)  # every write under /etc/hardway lands on the small tmpfs
    monkeypatch.setenv("HARDWAY_ROOT", str(root))
    (etc / "config.yaml").write_text(CONFIG)
    (etc / ".lock").touch()
    fill(etc)
    original = (etc / "config.yaml").read_bytes()
    names = sorted(p.name for p in etc.iterdir())
    argv = ("config", "set", "users.allowed", ",".join(f"student{i:03d}" for i in range(200)))
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err == (f"hardway: error: cannot write {etc}/config.yaml: No space left on device; "
                   "it was left unchanged\n")
    assert (etc / "config.yaml").read_bytes() == original
    assert sorted(p.name for p in etc.iterdir()) == names  # no temp file left behind
    # read-only: the same, one line and exit 1, before anything is read or written
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err and "nothing was changed" in err
    assert (etc / "config.yaml").read_bytes() == original
