"""Issue 11, acceptance 4, on a booted host: plugins cannot break each other.

Third-party plugins are built into wheels on this machine (tests/sample_plugin, and tiny
ones written here) and installed into the hub's environment with its own uv, as an
admin would (`uv pip install`): hardway finds each through its `hardway` entry point.
The tests run in file order on one installed container.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from conftest import install_fresh, process_owners
from hubclient import HubUser, wait_for_hub

REPO = Path(__file__).resolve().parent.parent
HUB_PY = "/opt/hardway/hub/bin/python"
HUB_UV = "/opt/hardway/hub/bin/uv"
WHEELS = "/root/plugin-wheels"

#: plugins written here: (entry-point name, module source)
PLUGINS = {
    # returns None where a dict is required
    "nonehook": """
        from hardway.plugin import hookimpl

        @hookimpl
        def hardway_hub_config(settings, ctx):
            return None
        """,
    # raises while hardway collects the hub's packages
    "raising": """
        from hardway.plugin import hookimpl

        @hookimpl
        def hardway_hub_packages(settings):
            raise RuntimeError("the licence server is unreachable")
        """,
    # fails to import: the module needs a package that is not installed
    "broken": """
        import hardway_no_such_dependency  # noqa: F401
        """,
}


#: every process as "user command line", read from /proc
def build_wheel(source: Path, out: Path) -> Path:
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "build", "-q", "--wheel", "--out-dir", str(out), str(source)],
                   check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, str]:
    """Entry-point name -> wheel file name, built on this machine."""
    out = tmp_path_factory.mktemp("wheels")
    src = tmp_path_factory.mktemp("plugin-sources")
    shutil.copytree(REPO / "tests" / "sample_plugin", src / "sample",
                    ignore=shutil.ignore_patterns("build", "*.egg-info"))
    build_wheel(src / "sample", out)
    for name, code in PLUGINS.items():
        d = src / name
        (d / f"hardway_it_{name}").mkdir(parents=True)
        (d / f"hardway_it_{name}" / "__init__.py").write_text(textwrap.dedent(code))
        (d / "pyproject.toml").write_text(textwrap.dedent(f"""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "hardway-it-{name}"
            version = "1.0"

            [project.entry-points.hardway]
            {name} = "hardway_it_{name}"

            [tool.setuptools]
            packages = ["hardway_it_{name}"]
            """))
        build_wheel(d, out)
    found = {p.name: p for p in out.glob("*.whl")}
    by_name = {"sample": next(n for n in found if n.startswith("hardway_sample_plugin-"))}
    for name in PLUGINS:
        by_name[name] = next(n for n in found if n.startswith(f"hardway_it_{name}-"))
    return {**by_name, "_dir": str(out)}


@pytest.fixture(scope="module")
def host(wheels):
    for inst in install_fresh("hw-plugins"):
        inst.c.run(["mkdir", "-p", WHEELS])
        for whl in Path(wheels["_dir"]).glob("*.whl"):
            shutil.copy(whl, inst.c.path(f"{WHEELS}/{whl.name}"))
        yield inst


def hw(host, *args: str, check: bool = True, env: dict[str, str] | None = None):
    return host.c.run(["hardway", *args], check=check, timeout=900, env=env)


def pip(host, verb: str, *args: str):
    extra = ["--no-index", "--no-deps"] if verb == "install" else []
    return host.c.run([HUB_UV, "pip", verb, "-q", "--python", HUB_PY, *extra, *args],
                      timeout=300)


def install(host, wheels, name: str) -> None:
    pip(host, "install", f"{WHEELS}/{wheels[name]}")


def one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    return lines[0]


def rendered_hub_json(host) -> str:
    path = host.c.run([HUB_PY, "-c", "from hardway.paths import default_paths; "
                                     "print(default_paths().hub_json)"]).stdout.strip()
    return host.c.run(["cat", path]).stdout


def answers(host) -> None:
    wait_for_hub(host.base, timeout=60)
    assert requests.get(host.base + "/hub/login", timeout=10).status_code == 200


def services(host) -> dict:
    admin = HubUser(host.base, "alice", host.admin_password).sign_in()
    admin.make_token()
    r = admin.api("GET", "/hub/api/services")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_plugin_adding_a_service_sits_next_to_the_culler(host, wheels):
    install(host, wheels, "sample")
    r = hw(host, "config", "reload")
    assert "jupyterhub.service" in r.stdout, r.stdout
    answers(host)
    found = services(host)
    assert {"idle-culler", "sample-reporter"} <= set(found), found
    assert "idle-culler" in found["idle-culler"]["roles"], found["idle-culler"]
    assert "sample-reporter" in found["sample-reporter"]["roles"], found["sample-reporter"]
    # the culler still runs, as its own account
    deadline = time.monotonic() + 30  # the hub starts its culler a moment after it answers
    while (owners := process_owners(host.c, "jupyterhub_idle_culler")) != ["hardway-services"]:
        assert time.monotonic() < deadline, owners
        time.sleep(1)


def test_a_plugin_returning_none_is_named_in_one_line_and_the_hub_keeps_serving(host, wheels):
    before = rendered_hub_json(host)
    install(host, wheels, "nonehook")
    try:
        r = hw(host, "config", "reload", check=False)
        line = one_error_line(r)
        assert line == ("hardway: error: plugin 'nonehook' (hook hardway_hub_config) returned "
                        "None; expected a dict of {Class: {trait: value}}"), line
        assert rendered_hub_json(host) == before
        answers(host)
    finally:
        pip(host, "uninstall", "hardway-it-nonehook")


def test_a_plugin_that_raises_is_named_in_one_line(host, wheels):
    install(host, wheels, "raising")
    try:
        r = hw(host, "config", "reload", check=False)
        line = one_error_line(r)
        assert line.startswith("hardway: error: plugin 'raising' (hook hardway_hub_packages) "
                               "raised RuntimeError: the licence server is unreachable (at "), line
        answers(host)
    finally:
        pip(host, "uninstall", "hardway-it-raising")
    r = hw(host, "config", "reload")
    assert "nothing changed; nothing restarted" in r.stdout, r.stdout


def test_a_broken_unselected_plugin_does_not_stop_the_hub(host, wheels):
    install(host, wheels, "broken")
    try:
        # every command names it, with the way out
        r = hw(host, "config", "show", "http.port", check=False)
        line = one_error_line(r)
        assert line.startswith("hardway: error: plugin 'broken' (entry point hardway: broken "
                               "= hardway_it_broken) failed to import: ModuleNotFoundError: "
                               "No module named 'hardway_no_such_dependency'"), line
        assert line.endswith("HARDWAY_BLOCK_PLUGINS=broken"), line
        # a new package in the hub environment: reload restarts the hub to run what is
        # installed, and the hub, which never imports it, comes back
        r = hw(host, "config", "reload", env={"HARDWAY_BLOCK_PLUGINS": "broken"})
        assert "restarted: jupyterhub.service" in r.stdout, r.stdout
        answers(host)
        host.c.run(["systemctl", "restart", "jupyterhub"])  # and again, by hand
        answers(host)
        assert host.c.run(["systemctl", "is-active", "jupyterhub"]).stdout.strip() == "active"
        assert {"idle-culler", "sample-reporter"} <= set(services(host))
    finally:
        pip(host, "uninstall", "hardway-it-broken")
