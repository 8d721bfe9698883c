from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hardway.paths import Paths
from hardway.plugin.manager import Registry, make_manager


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path)
    p.etc.mkdir(parents=True)
    return p


@pytest.fixture
def registry() -> Registry:
    return Registry(make_manager(load_entrypoints=False))


def write_config(paths: Paths, text: str, name: str | None = None) -> Path:
    target = paths.config_file if name is None else paths.config_d / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (root only), unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == 28  # ENOSPC
    finally:
        os.close(fd)


SAMPLE_PLUGIN = Path(__file__).parent / "sample_plugin"


def _forget(modules: list[str]) -> None:
    import sys

    for name in modules:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def sample_plugin(tmp_path_factory):
    """tests/sample_plugin installed (built by uv, as a user would install it) into a
    directory put first on sys.path for this module's tests: hardway finds it through its
    `hardway` entry point. Returns the entry-point name."""
    import shutil
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("sample-plugin")
    source = tmp_path_factory.mktemp("sample-source") / "sample_plugin"
    # a copy: setuptools leaves build/ and *.egg-info next to the sources it builds
    shutil.copytree(SAMPLE_PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "pip", "install", "-q", "--python", sys.executable,
                    "--target", str(target), "--no-deps", str(source)], check=True)
    sys.path.insert(0, str(target))
    try:
        yield "sample"
    finally:
        sys.path.remove(str(target))
        _forget(["hardway_sample_plugin"])


def fake_entry_point(where: Path, name: str, module: str, source: str) -> Path:
    """An installed distribution (dist-info and module) declaring ``hardway: name =
    module``; put ``where`` on sys.path to install it."""
    where.mkdir(parents=True, exist_ok=True)
    info = where / f"hardway_test_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: hardway-test-{name}\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[hardway]\n{name} = {module}\n")
    (where / f"{module}.py").write_text(source)
    return where
