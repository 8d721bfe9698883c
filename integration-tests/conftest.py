"""Fixtures for tests on a booted systemd host (see harness.py)."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import harness
from harness import REPO, Container

ARTIFACTS = Path(os.environ.get("HARDWAY_ARTIFACTS", REPO / "artifacts"))
BOOTSTRAP = "/root/hardway/bootstrap/bootstrap.py"


def record(name: str, data: dict) -> None:
    """Keep a measured figure as a JSON artifact (and print it), never assert on it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n[figure] {name}: {json.dumps(data)}")


class Installed:
    def __init__(self, container: Container, admin_password: str):
        self.c = container
        self.admin_password = admin_password
        self.base = "http://127.0.0.1"
        self.bootstrap_args = ["python3", BOOTSTRAP, "--admin", f"alice:{admin_password}"]
        self.first_output = ""
        self.first_seconds = 0.0

    def bootstrap(self):
        t0 = time.monotonic()
        r = self.c.run(self.bootstrap_args, check=False, timeout=1200)
        took = time.monotonic() - t0
        if r.returncode != 0:
            journal = self.c.run(["journalctl", "--no-pager", "-n", "80", "-u", "jupyterhub",
                                  "-u", "jupyterhub-proxy"], check=False).stdout
            raise AssertionError(f"bootstrap failed ({r.returncode}):\n{r.stdout[-5000:]}\n"
                                 f"{r.stderr[-3000:]}\njournal:\n{journal}")
        return r, took


def install_fresh(name: str, suite: str = harness.SUITE, extra: tuple[str, ...] = (),
                  password_prefix: str = "wonderland-"):
    """A fresh container where bootstrap ran exactly as the README tells a user (plus
    ``extra`` bootstrap flags)."""
    c = Container.create(name, suite=suite)
    try:
        c.boot()
        inst = Installed(c, password_prefix + secrets.token_hex(6))
        inst.bootstrap_args += list(extra)
        r, took = inst.bootstrap()
        inst.first_output, inst.first_seconds = r.stdout, took
        yield inst
    finally:
        c.destroy()


@pytest.fixture(scope="session", autouse=True)
def container_slot():
    """One integration session (or benchmark) at a time holds the host's ports."""
    with harness.container_slot():
        yield


@pytest.fixture(scope="module")
def installed():
    for inst in install_fresh("hw-install"):
        record("install-cold", {"figure": inst.first_seconds, "unit": "s",
                                "how": "bootstrap.py in a fresh booted container, empty "
                                       "caches, until the hub answered through the proxy"})
        yield inst


@pytest.fixture(scope="module")
def hub():
    """Another freshly installed hub, for tests that change its settings."""
    yield from install_fresh("hw-config")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The platform matrix last: run-tests.sh builds its roots in the background while the
    other tests run."""
    items.sort(key=lambda item: getattr(item, "module", None) is not None
               and item.module.__name__ == "test_platforms")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call" and rep.failed:
        for inst in item.funcargs.values():
            if isinstance(inst, Installed) and inst.c.init_pid:
                journal = inst.c.run(["journalctl", "--no-pager", "-n", "60", "-o", "cat",
                                      "-u", "jupyterhub", "-u", "jupyterhub-proxy"],
                                     check=False).stdout
                rep.sections.append((f"journal of {inst.c.name}", journal))
    return rep


#: the accounts the processes whose command line holds argv[1] run as (the containers
#: have no procps)
_OWNERS = r"""
import os, pwd, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    if pid == str(os.getpid()):
        continue  # this probe holds the needle in its own command line
    try:
        if sys.argv[1].encode() in open(f"/proc/{pid}/cmdline", "rb").read():
            print(pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name)
    except OSError:
        pass
"""


def process_owners(c: Container, needle: str) -> list[str]:
    """Who runs the processes whose command line contains ``needle``, inside ``c``."""
    return c.run(["python3", "-c", _OWNERS, needle]).stdout.split()
