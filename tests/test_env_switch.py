"""Environments built beside the one in use and switched to in one rename (issue 12).

The user environment's name (/opt/hardway/user) is a symlink into /opt/hardway/envs; each
wanted content gets its own directory, so a running server keeps the one it started
with, going back to a previous version finds it built, and an interrupted build is
discarded instead of trusted. uv itself is replaced here by a recorder that lays out
what it would (a venv with a Python, then a package file): the commands are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hardway.apply import pyenv
from hardway.paths import Paths


class FakeUv:
    """Records commands; `uv venv` makes a venv directory, `uv pip install` a file per
    requirement (so a test sees which directory each went to)."""

    def __init__(self, fail_install: bool = False):
        self.commands: list[list[str]] = []
        self.fail_install = fail_install

    def run(self, cmd, **kw):
        self.commands.append(list(cmd))
        if cmd[1] == "venv":
            target = Path(cmd[-1])
            (target / "bin").mkdir(parents=True)
            (target / "bin" / "python").touch()
            (target / "pyvenv.cfg").write_text(f"version_info = {pyenv.current_python_version()}\n")
        elif cmd[1:3] == ["pip", "install"]:
            if self.fail_install:
                raise subprocess.CalledProcessError(1, cmd)
            target = Path(cmd[cmd.index("--python") + 1]).parent.parent
            for req in cmd:
                if req.startswith("pkg"):  # as given, or as the pinned line
                    (target / req.split("==")[0]).write_text("installed\n")
        return subprocess.CompletedProcess(cmd, 0, stdout="Installed 1 package\n")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path)
    p.prefix.mkdir(parents=True)
    return p


def user_env(paths: Paths, *reqs: str) -> pyenv.Env:
    pins = paths.prefix.parent / "pins.txt"
    if not pins.exists():
        pins.write_text("pkg-a==1\n")
    return pyenv.Env(paths.user_venv, list(reqs), pins, beside=paths.envs)


def built(paths: Paths) -> list[str]:
    return sorted(p.name for p in paths.envs.iterdir() if not p.name.startswith("."))


def test_a_first_build_goes_beside_and_the_name_points_at_it(paths):
    uv = FakeUv()
    env = user_env(paths, "pkg-a")
    changes = env.ensure(uv, "uv")
    assert paths.user_venv.is_symlink()
    target = paths.user_venv.resolve()
    assert target.parent == paths.envs.resolve() and target.name.startswith("user-")
    assert (target / "pkg-a").exists()
    assert not (target / pyenv.MARKER).exists()
    assert json.loads((target / pyenv.STAMP).read_text()) == env.wanted_stamp()
    assert any(c.startswith(f"built {target}") for c in changes)
    assert env.previous is None
    # relative: the tree stays valid wherever it is mounted (a restore, a test root)
    assert not os.readlink(paths.user_venv).startswith("/")
    assert env.is_current() and user_env(paths, "pkg-a").ensure(uv, "uv") == []


def test_a_change_builds_a_new_directory_and_keeps_the_old_one(paths):
    uv = FakeUv()
    user_env(paths, "pkg-a").ensure(uv, "uv")
    first = paths.user_venv.resolve()
    env = user_env(paths, "pkg-a", "pkg-b")
    changes = env.ensure(uv, "uv")
    second = paths.user_venv.resolve()
    assert second != first
    assert (second / "pkg-b").exists() and not (first / "pkg-b").exists()
    assert env.previous == first  # the way back
    assert first.is_dir()  # kept: servers started from it, and a rollback
    assert f"{paths.user_venv} -> {second.name} (was {first.name})" in changes


def test_only_the_current_and_the_previous_are_kept(paths):
    uv = FakeUv()
    for reqs in (["pkg-a"], ["pkg-a", "pkg-b"], ["pkg-a", "pkg-c"]):
        user_env(paths, *reqs).ensure(uv, "uv")
    assert len(built(paths)) == 2
    assert (paths.user_venv.resolve() / "pkg-c").exists()


def test_going_back_finds_the_previous_build(paths):
    uv = FakeUv()
    user_env(paths, "pkg-a").ensure(uv, "uv")
    first = paths.user_venv.resolve()
    user_env(paths, "pkg-a", "pkg-b").ensure(uv, "uv")
    uv.commands.clear()
    changes = user_env(paths, "pkg-a").ensure(uv, "uv")
    assert paths.user_venv.resolve() == first
    assert uv.commands == []  # nothing built: the directory was complete
    assert any("used again" in c for c in changes)


def test_an_interrupted_build_is_discarded_and_built_again(paths):
    env = user_env(paths, "pkg-a")
    with pytest.raises(subprocess.CalledProcessError):
        env.ensure(FakeUv(fail_install=True), "uv")
    assert not paths.user_venv.exists()  # never switched to a half-built environment
    half = next(paths.envs.iterdir())
    assert (half / pyenv.MARKER).exists()
    uv = FakeUv()
    changes = user_env(paths, "pkg-a").ensure(uv, "uv")
    assert changes[0] == f"discarded {half} (its build was interrupted)"
    assert (paths.user_venv.resolve() / "pkg-a").exists()
    assert [c[1] for c in uv.commands] == ["venv", "pip"]


def test_a_failed_build_leaves_the_running_environment_in_place(paths):
    user_env(paths, "pkg-a").ensure(FakeUv(), "uv")
    first = paths.user_venv.resolve()
    with pytest.raises(subprocess.CalledProcessError):
        user_env(paths, "pkg-a", "pkg-b").ensure(FakeUv(fail_install=True), "uv")
    assert paths.user_venv.resolve() == first


def test_an_environment_from_before_switching_is_moved_aside_and_can_come_back(paths):
    legacy = paths.user_venv
    (legacy / "bin").mkdir(parents=True)
    (legacy / "bin" / "python").touch()
    (legacy / "old-package").write_text("x")
    env = user_env(paths, "pkg-a")
    env.ensure(FakeUv(), "uv")
    assert paths.user_venv.is_symlink()
    assert env.previous == paths.envs / "user-legacy"
    assert (paths.envs / "user-legacy" / "old-package").exists()
    # its scripts name /opt/hardway/user: pointing the name back revives it
    pyenv.switch_link(paths.user_venv, env.previous)
    assert (paths.user_venv / "old-package").exists()


def test_a_patch_update_of_python_keeps_the_environment(paths, monkeypatch):
    uv = FakeUv()
    user_env(paths, "pkg-a").ensure(uv, "uv")
    major, minor, patch = sys.version_info[:3]
    monkeypatch.setattr(pyenv, "current_python_version", lambda: f"{major}.{minor}.{patch + 1}")
    assert user_env(paths, "pkg-a").is_current()
    monkeypatch.setattr(pyenv, "current_python_version", lambda: f"{major}.{minor + 1}.0")
    env = user_env(paths, "pkg-a")
    assert not env.is_current()
    env.ensure(uv, "uv")
    assert len(built(paths)) == 2 and env.previous is not None


def test_a_directory_a_process_still_maps_is_not_pruned(paths, tmp_path):
    uv = FakeUv()
    user_env(paths, "pkg-a").ensure(uv, "uv")
    oldest = paths.user_venv.resolve()
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "maps").write_text(
        f"7f00-7f01 r-xp 0 08:01 1 {oldest}/lib/python3.11/site-packages/x.so\n")
    assert pyenv.in_use([oldest, paths.envs / "other"], proc) == {oldest}
    assert pyenv.in_use([paths.envs / "other"], proc) == set()


def test_switching_replaces_a_leftover_temporary_link(paths):
    target = paths.envs / "user-abc"
    target.mkdir(parents=True)
    stale = paths.prefix / ".user.switch"
    stale.symlink_to("nowhere")
    assert pyenv.switch_link(paths.user_venv, target) is None
    assert paths.user_venv.resolve() == target.resolve()
    assert not stale.is_symlink()


def test_forcing_a_rebuild_never_removes_the_environment_in_use(paths):
    """doctor's fix for a damaged environment: remove its stamp, reload."""
    uv = FakeUv()
    user_env(paths, "pkg-a").ensure(uv, "uv")
    in_use = paths.user_venv.resolve()
    (in_use / pyenv.STAMP).unlink()
    env = user_env(paths, "pkg-a")
    env.ensure(uv, "uv")
    assert (in_use / "pkg-a").exists()  # still there for the servers using it
    assert paths.user_venv.resolve() != in_use and env.previous == in_use


def test_apt_lists_age(tmp_path):
    from hardway.ops.install import apt_lists_age

    assert apt_lists_age(tmp_path) == float("inf")  # never fetched
    release = tmp_path / "deb.example_dists_stable_InRelease"
    release.write_text("x")
    os.utime(release, (0, 1000.0))
    assert apt_lists_age(tmp_path) > 365 * 86400
    os.utime(release)
    assert apt_lists_age(tmp_path) < 60


def test_a_version_chosen_over_the_pins_replaces_their_line(paths):
    """uv applies a constraint on top of an override: the pinned line must go."""
    pins = paths.prefix.parent / "pins-jh.txt"
    pins.write_text("jupyterhub==6.1.1 \\\n    --hash=sha256:aa\npkg-a==1 \\\n"
                    "    --hash=sha256:bb\n")
    uv = FakeUv()
    env = pyenv.Env(paths.user_venv, ["pkg-a", "jupyterhub==5.5.4"], pins, beside=paths.envs,
                    overrides=["jupyterhub==5.5.4"])
    env.ensure(uv, "uv")
    install = next(c for c in uv.commands if c[1:3] == ["pip", "install"])
    constraints = Path(install[install.index("--constraints") + 1]).read_text()
    assert "jupyterhub" not in constraints
    assert constraints.split() == ["pkg-a==1", "--hash=sha256:bb"]
    override = Path(install[install.index("--override") + 1]).read_text()
    assert override == "jupyterhub==5.5.4\n"
    assert "--require-hashes" not in install  # the chosen version has no pinned hash
    assert env.wanted_stamp()["overrides"] == ["jupyterhub==5.5.4"]
