"""Environments an interrupted in-place package step left half-written are found and
repaired (hardway.apply.pyenv.damage). Environments built beside the running one are
never repaired: an unfinished build is discarded (tests/test_env_switch.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from hardway.apply import pyenv
from hardway.errors import SystemError_

SITE = "lib/python3.11/site-packages"


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def add_dist(venv: Path, name: str, files: dict[str, bytes], unhashed: tuple[str, ...] = (),
             version: str = "1.0", requires: tuple[str, ...] = ()) -> Path:
    """Install a fake distribution: ``files`` are RECORD paths (relative to
    site-packages, so ``../../../share/...`` lands in the venv) with their contents."""
    site = venv / SITE
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    needs = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                        f"Version: {version}\n{needs}\nA package.\n")
    rows = []
    for rel, data in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rows.append(f"{rel},{digest(data)},{len(data)}")
    rows += [f"{rel},," for rel in unhashed]
    rows.append(f"{dist_info.name}/RECORD,,")
    (dist_info / "RECORD").write_text("\n".join(rows) + "\n")
    return dist_info


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    v = tmp_path / "venv"
    add_dist(v, "jupyterhub", {
        "jupyterhub/__init__.py": b"version = '6'\n",
        "jupyterhub/app.py": b"print('hub')\n" * 50,
        "../../../share/jupyterhub/templates/login.html": b"<form>password</form>\n",
        "../../../bin/jupyterhub": b"#!/opt/hardway/hub/bin/python\n",
    }, unhashed=("jupyterhub/__pycache__/app.cpython-311.pyc",
                 # outside the venv: never checked, even though it does not exist
                 "../../../../../etc/jupyterhub-outside.txt"),
             requires=("traitlets",))
    add_dist(v, "traitlets", {"traitlets/__init__.py": b"x = 1\n"})
    return v


def check_pyenv(venv: Path) -> tuple[list[str], list[str]]:
    found = pyenv.damage(venv)
    return sorted(found.files), sorted(found.incomplete.values())


CHECKS = pytest.mark.parametrize("check", [check_pyenv], ids=["pyenv"])


@CHECKS
def test_a_clean_tree_passes(venv, check):
    assert check(venv) == ([], [])


@CHECKS
def test_a_changed_file_names_its_package(venv, check):
    (venv / SITE / "jupyterhub/app.py").write_bytes(b"print('hub')\n" * 10)  # half-written
    assert check(venv) == (["jupyterhub"], [])


@CHECKS
def test_a_missing_data_file_names_its_package(venv, check):
    # what made every page answer 500: TemplateNotFound: login.html
    (venv / "share/jupyterhub/templates/login.html").unlink()
    assert check(venv) == (["jupyterhub"], [])


@CHECKS
def test_a_dist_info_without_metadata_is_named(venv, check):
    next((venv / SITE).glob("traitlets-*.dist-info")).joinpath("METADATA").unlink()
    assert check(venv) == ([], ["traitlets"])


@CHECKS
def test_a_dist_info_without_record_is_named(venv, check):
    next((venv / SITE).glob("traitlets-*.dist-info")).joinpath("RECORD").unlink()
    assert check(venv) == ([], ["traitlets"])


@CHECKS
def test_unhashed_entries_and_paths_outside_are_not_checked(venv, check):
    # the bytecode entry has no hash, the /etc one lies outside: neither exists, both pass
    assert not (venv / SITE / "jupyterhub/__pycache__").exists()
    assert check(venv) == ([], [])
    # a RECORD path that climbs out of the venv is not opened, even when it exists
    outside = venv.parent / "outside.txt"
    outside.write_text("not ours")
    dist_info = next((venv / SITE).glob("traitlets-*.dist-info"))
    with open(dist_info / "RECORD", "a") as f:
        f.write(f"../../../../outside.txt,{digest(b'something else')},3\n")
    assert check(venv) == ([], [])


def test_the_pyenv_report_names_file_and_reason(venv):
    (venv / "share/jupyterhub/templates/login.html").unlink()
    found = pyenv.damage(venv)
    assert found.names == ["jupyterhub"]
    assert "login.html (missing)" in found.describe()


@CHECKS
def test_data_files_not_moved_out_name_their_package(venv, check):
    """Killed after a wheel was unpacked but before its .data files were moved into the
    venv: its RECORD may still list them inside NAME-VERSION.data, where they are."""
    (venv / SITE / "traitlets-1.0.data" / "data" / "share").mkdir(parents=True)
    assert check(venv) == (["traitlets"], [])


def test_leftover_data_dirs_are_found_and_cleared(venv):
    junk = venv / SITE / "notebook-7.0.data" / "data" / "share"  # notebook: not installed
    junk.mkdir(parents=True)
    found = pyenv.damage(venv)
    assert not found  # junk, not damage: removed before the install, never fatal
    assert found.leftovers == [venv / SITE / "notebook-7.0.data"]
    pyenv.clear_incomplete(found)
    assert not (venv / SITE / "notebook-7.0.data").exists()


class FakeSystem:
    """Records commands; ``fix`` runs on each uv install, as uv would change the venv."""

    def __init__(self, fix=lambda cmd: None):
        self.commands: list[list[str]] = []
        self.fix = fix

    def run(self, cmd, **kw):
        self.commands.append(list(cmd))
        if cmd[1:3] == ["pip", "install"]:
            self.fix(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="")


def make_env(venv: Path, tmp_path: Path) -> pyenv.Env:
    (venv / "bin").mkdir(exist_ok=True)
    (venv / "bin" / "python").touch()
    pins = tmp_path / "pins.txt"
    pins.write_text("jupyterhub==6.1.1\n")
    return pyenv.Env(venv, ["jupyterhub", "notebook"], pins, rebuild=False)


def test_an_interrupted_env_is_repaired_and_says_so(venv, tmp_path):
    env = make_env(venv, tmp_path)
    login = venv / "share/jupyterhub/templates/login.html"
    login.unlink()
    next((venv / SITE).glob("traitlets-*.dist-info")).joinpath("METADATA").unlink()
    env.marker.write_text("")  # the run before was killed
    assert not env.is_current()

    def reinstall(cmd):
        if "--reinstall-package" in cmd:
            login.write_bytes(b"<form>password</form>\n")
        # uv installs traitlets afresh once its unreadable dist-info is gone
        if not list((venv / SITE).glob("traitlets-*.dist-info")):
            add_dist(venv, "traitlets", {"traitlets/__init__.py": b"x = 1\n"})

    system = FakeSystem(reinstall)
    changes = env.ensure(system, "uv")
    install = system.commands[0]
    assert install[install.index("--reinstall-package") + 1] == "jupyterhub"
    assert install.count("--reinstall-package") == 1
    assert install[-1] == "traitlets"  # outside the requirements: named so uv installs it
    assert ("repaired " + str(venv) + " after an interrupted install: reinstalled "
            "jupyterhub, traitlets") in changes
    assert not env.marker.exists()
    assert env.is_current()
    assert json.loads(env.stamp_file.read_text()) == env.wanted_stamp()


def test_damage_a_repair_left_is_repaired_once_more(venv, tmp_path):
    """After an interruption the repair itself is checked: a file uv's first pass did not
    put back (its cache held the same damage, say) gets one more reinstall."""
    env = make_env(venv, tmp_path)
    app = venv / SITE / "jupyterhub/app.py"
    good = app.read_bytes()
    app.write_bytes(b"truncated")
    env.marker.write_text("")
    passes: list[int] = []

    def second_pass_fixes(cmd):
        passes.append(1)
        if len(passes) == 2:
            app.write_bytes(good)

    system = FakeSystem(second_pass_fixes)
    changes = env.ensure(system, "uv")
    assert len(system.commands) == 2
    assert all("--reinstall-package" in c for c in system.commands)
    assert app.read_bytes() == good
    assert any(c.startswith(f"repaired {venv}") for c in changes)
    assert not env.marker.exists()


def test_damage_that_stays_is_one_clear_error(venv, tmp_path):
    env = make_env(venv, tmp_path)
    (venv / "share/jupyterhub/templates/login.html").unlink()
    env.marker.write_text("")
    with pytest.raises(SystemError_) as e:
        env.ensure(FakeSystem(), "uv")
    message = str(e.value)
    assert "\n" not in message
    assert str(venv) in message and "jupyterhub" in message and "login.html" in message
    assert env.marker.exists()  # the next run checks again
    assert not env.stamp_file.exists()


def test_a_clean_env_without_marker_is_not_repaired(venv, tmp_path):
    env = make_env(venv, tmp_path)
    system = FakeSystem()
    changes = env.ensure(system, "uv")
    assert len(system.commands) == 1
    assert "--reinstall-package" not in system.commands[0]
    assert not any(c.startswith("repaired") for c in changes)
    assert not env.marker.exists()


def test_a_venv_left_without_python_is_recreated_with_clear(tmp_path):
    """`uv venv` cut short leaves a directory uv otherwise refuses to create a venv over."""
    venv = tmp_path / "user"
    (venv / "lib").mkdir(parents=True)
    pins = tmp_path / "pins.txt"
    pins.write_text("")
    env = pyenv.Env(venv, ["jupyterlab"], pins)

    class Creates(FakeSystem):
        def run(self, cmd, **kw):
            if cmd[1] == "venv":
                (venv / "bin").mkdir(exist_ok=True)
                (venv / "bin" / "python").touch()
            return super().run(cmd, **kw)

    system = Creates()
    env.ensure(system, "uv")
    assert system.commands[0][:3] == ["uv", "venv", "--clear"]
