"""bootstrap.py's own logic (its refusals on a real host are in integration-tests/)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).parent.parent / "bootstrap" / "bootstrap.py"
spec = importlib.util.spec_from_file_location("bootstrap", PATH)
bootstrap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bootstrap)


def test_standard_library_only():
    import sys

    tree = ast.parse(PATH.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def test_admin_password_may_contain_colons():
    args = bootstrap.parse_args(["--admin", "Alice:pa:ss:word", "--admin", "bob"])
    assert args.admins == {"alice": "pa:ss:word", "bob": None}


@pytest.mark.parametrize("argv, message", [
    (["--admin", ""], "expected NAME or NAME:PASSWORD"),
    (["--admin", "a b"], "expected NAME or NAME:PASSWORD"),
    (["--admin", "bob:"], "empty password"),
    (["--plugin", ""], "not a pip requirement"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_flags_are_refusals(argv, message):
    with pytest.raises(bootstrap.Refusal, match=message):
        bootstrap.parse_args(argv)


def test_os_release_and_versions(tmp_path):
    p = tmp_path / "os-release"
    p.write_text('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n')
    info = bootstrap.read_os_release(str(p))
    assert info["ID"] == "ubuntu"
    assert bootstrap.version_tuple(info["VERSION_ID"]) == (24, 4)
    assert bootstrap.version_tuple("22.04") >= bootstrap.SUPPORTED["ubuntu"]
    assert bootstrap.version_tuple("20.04") < bootstrap.SUPPORTED["ubuntu"]
    assert bootstrap.version_tuple("12") >= bootstrap.SUPPORTED["debian"]


def test_source_digest_follows_code_changes(tmp_path):
    for d in ("hardway", "plugins", "units"):
        (tmp_path / d).mkdir()
    (tmp_path / "setup.cfg").write_text("[metadata]\n")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "hardway" / "a.py").write_text("x = 1\n")
    first = bootstrap.source_tree_digest(str(tmp_path))
    (tmp_path / "hardway" / "__pycache__").mkdir()
    (tmp_path / "hardway" / "__pycache__" / "a.pyc").write_bytes(b"junk")
    assert bootstrap.source_tree_digest(str(tmp_path)) == first
    (tmp_path / "hardway" / "a.py").write_text("x = 2\n")
    assert bootstrap.source_tree_digest(str(tmp_path)) != first


def test_uses_no_syntax_newer_than_python_36():
    tree = ast.parse(PATH.read_text(), feature_version=(3, 6))
    assert tree  # parses as 3.6 code: old Pythons reach the version check


def test_redacting_admin_arguments_keeps_names_and_never_grows():
    area = b"\0".join([b"python3", b"-", b"--admin", b"Alice:pa:ss", b"--plugin", b"x:y",
                       b"--adm=bob:longer-secret", b"--admin", b"carol", b"--a", b"d:pw",
                       b""])
    new, count = bootstrap.redact_admin_args(area)
    assert count == 3 and len(new) == len(area)
    assert new.rstrip(b"\0").split(b"\0") == [
        b"python3", b"-", b"--admin", b"Alice:***", b"--plugin", b"x:y",
        b"--adm=bob:***", b"--admin", b"carol", b"--a", b"d:**"]
    assert bootstrap.redact_admin_args(b"python3\0--admin\0carol\0") == (
        b"python3\0--admin\0carol\0", 0)


def test_scrub_removes_the_password_from_the_process_command_line():
    """What `ps` and other users see in /proc/PID/cmdline while bootstrap runs."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bootstrap; "
            "print(bootstrap.scrub_cmdline_passwords(), flush=True); sys.stdin.read()")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(PATH.parent), "--admin", "alice:s3cret:pw",
         "--admin=bob:hunter22", "--plugin", "extra"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"2\n"
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            cmdline = f.read()
    finally:
        proc.communicate(b"")
    assert b"s3cret" not in cmdline and b"hunter22" not in cmdline
    assert cmdline.rstrip(b"\0").split(b"\0")[-5:] == [
        b"--admin", b"alice:***", b"--admin=bob:***", b"--plugin", b"extra"]


def test_a_password_on_the_command_line_is_warned_about(capsys, monkeypatch):
    def stop_here(force):
        raise bootstrap.Refusal("stop here")

    monkeypatch.setattr(bootstrap, "check_system", stop_here)
    assert bootstrap.main(["--admin", "alice:s3cret"]) == 2
    err = capsys.readouterr().err
    assert "visible to other local users" in err and "shell history" in err
    assert "--admin NAME" in err and "s3cret" not in err
    assert bootstrap.main(["--admin", "alice"]) == 2
    assert "visible" not in capsys.readouterr().err


def test_a_password_bcrypt_cannot_hash_is_refused():
    with pytest.raises(bootstrap.Refusal, match="longer than 72 bytes"):
        bootstrap.parse_args(["--admin", "alice:" + "x" * 73])
