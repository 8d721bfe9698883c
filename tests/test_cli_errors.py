"""What the terminal shows when something goes wrong that hardway did not foresee: one
line naming the error and where its traceback went, never the traceback itself."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hardway.cli import main as cli
from hardway.errors import ConfigError
from hardway.paths import Paths


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HARDWAY_ROOT", str(tmp_path))
    (tmp_path / "etc" / "hardway").mkdir(parents=True)
    return tmp_path


def fail_with(monkeypatch, exc: BaseException) -> None:
    def cmd_status(args, paths):
        raise exc

    monkeypatch.setattr(cli, "cmd_status", cmd_status)


def test_unexpected_error_is_one_line_and_the_traceback_goes_to_the_log(
        root, monkeypatch, capsys):
    log = Paths(root).cli_log
    fail_with(monkeypatch, RuntimeError("the frobnicator\nfell over"))
    assert cli.main(["status"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("hardway: unexpected error: RuntimeError: the frobnicator fell over; "
                   f"the traceback is in {log}\n")
    text = log.read_text()
    assert "hardway status" in text and "Traceback (most recent call last)" in text
    assert "in cmd_status" in text and "RuntimeError: the frobnicator\nfell over" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    # appended, never replaced
    fail_with(monkeypatch, KeyError("x"))
    assert cli.main(["status"]) == 1
    assert "unexpected error: KeyError: 'x';" in capsys.readouterr().err
    text = log.read_text()
    assert text.count("Traceback (most recent call last)") == 2 and "RuntimeError" in text


def test_when_the_log_cannot_be_written_the_line_says_so(root, monkeypatch, capsys):
    log = Paths(root).cli_log
    log.parent.parent.mkdir(parents=True)
    log.parent.write_text("a file where the log directory goes\n")
    fail_with(monkeypatch, ValueError("bad"))
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("hardway: unexpected error: ValueError: bad; the traceback could "
                          f"not be written to {log} (")


def test_interrupt_is_one_line_exit_130(root, monkeypatch, capsys):
    fail_with(monkeypatch, KeyboardInterrupt())
    assert cli.main(["status"]) == 130
    assert capsys.readouterr().err == "hardway: interrupted\n"
    assert not Paths(root).cli_log.exists()


def test_hardway_errors_keep_their_own_message_and_status(root, monkeypatch, capsys):
    fail_with(monkeypatch, ConfigError("limits.memory: expected a size, got 'lots'"))
    assert cli.main(["status"]) == 2
    assert capsys.readouterr().err == ("hardway: error: limits.memory: expected a size, "
                                       "got 'lots'\n")
    assert not Paths(root).cli_log.exists()


def test_help_and_version_still_exit_as_argparse_does(root, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0


def test_a_real_process_prints_no_traceback(root):
    # config.yaml that is a directory: nothing hardway checks for, so an unexpected error
    (root / "etc" / "hardway" / "config.yaml").mkdir()
    done = subprocess.run([sys.executable, "-m", "hardway.cli.main", "config", "set",
                           "limits.cpu", "2"], capture_output=True, text=True,
                          env={**os.environ, "HARDWAY_ROOT": str(root)}, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("hardway: unexpected error: IsADirectoryError: ")
    assert f"the traceback is in {Paths(root).cli_log}" in done.stderr
    assert "Traceback" in Paths(root).cli_log.read_text()
