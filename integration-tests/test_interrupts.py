"""Issue 11 on a booted host: bootstrap killed at many points of a fresh install, then run
again, always ends in a working hub and environments whose files match their records.
Environments are built beside each other under /opt/hardway/envs (issue 12): a build cut
short is discarded by the next run and built again, never trusted.

One container: each kill point starts from a wiped install (units stopped, /opt/hardway,
/etc/hardway, /var/lib/hardway removed; the uv and pip caches kept, so only the first
install downloads), runs bootstrap in the background in its own process group, SIGKILLs
the whole group at the point, runs bootstrap again to completion, and checks: the login
page renders, alice's kernel returns 2, and every distribution in both environments
matches its RECORD (checked by the venv's own Python with importlib.metadata, not with
hardway's code).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import Installed, record
from harness import CLEAN_ENV, Container
from hubclient import HubUser

HUB = "/opt/hardway/hub"
USER = "/opt/hardway/user"

RECORD_CHECK = r"""
import base64, hashlib, os, sys
from importlib import metadata
venv = os.path.realpath(sys.prefix)
bad = []
for dist in metadata.distributions():
    name = dist.metadata["Name"] if dist.read_text("METADATA") else None
    if name is None or dist.read_text("RECORD") is None:
        bad.append(f"{getattr(dist, '_path', dist)}: no METADATA or RECORD")
        continue
    for f in dist.files:
        if f.hash is None:
            continue
        path = os.path.realpath(dist.locate_file(f))
        if not path.startswith(venv + os.sep):
            continue
        try:
            data = open(path, "rb").read()
        except OSError as e:
            bad.append(f"{name}: {path}: {e.strerror}")
            continue
        got = base64.urlsafe_b64encode(hashlib.new(f.hash.mode, data).digest())
        if got.rstrip(b"=").decode() != f.hash.value:
            bad.append(f"{name}: {path}: changed")
site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(venv)]
for s in site:
    for entry in os.listdir(s):
        if entry.endswith(".data"):
            bad.append(f"leftover {s}/{entry}")
print("\n".join(bad) if bad else "clean")
"""

WIPE = r"""
systemctl stop 'jupyterhub-proxy-*.socket' jupyterhub.service jupyterhub-proxy.service \
    'jupyter-*' 2>/dev/null
systemctl stop hardway-netpolicy.service 2>/dev/null
rm -rf /opt/hardway /etc/hardway /var/lib/hardway /usr/local/bin/hardway \
       /etc/systemd/system/jupyterhub*.service /etc/systemd/system/jupyterhub*.socket \
       /etc/systemd/system/hardway-*.service
find /etc/systemd/system -xtype l -delete
systemctl daemon-reload
systemctl reset-failed
nft delete table inet hardway 2>/dev/null
true
"""


class Background:
    """bootstrap.py running inside the container in its own process group, its output
    read line by line (unbuffered)."""

    def __init__(self, inst: Installed):
        c = inst.c
        env = {**CLEAN_ENV, "PYTHONUNBUFFERED": "1"}
        cmd = ["nsenter", "-t", str(c.init_pid), "-a", "env", "-i",
               *(f"{k}={v}" for k, v in env.items()), *inst.bootstrap_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def kill_when(self, cond: Callable[[], bool], what: str, timeout: float = 600,
                  delay: float = 0.0) -> float:
        """SIGKILL the whole process group as soon as ``cond()`` holds; seconds waited."""
        t0 = time.monotonic()
        while not cond():
            if self.proc.poll() is not None:
                raise AssertionError(f"bootstrap ended ({self.proc.returncode}) before "
                                     f"{what}:\n{''.join(self.lines)[-3000:]}")
            if time.monotonic() - t0 > timeout:
                self.kill()
                raise AssertionError(f"{what} not reached in {timeout} s")
            time.sleep(0.002)
        if delay:
            time.sleep(delay)
        took = time.monotonic() - t0
        self.kill()
        return took

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:  # every member of the group is gone
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.reader.join(10)


ENVS = "/opt/hardway/envs"


def site_packages(c: Container, venv: str) -> list[Path]:
    """The site-packages of the environments being built for ``venv`` (hub or user)."""
    name = venv.rsplit("/", 1)[1]
    return list(c.path(ENVS).glob(f"{name}-*/lib/python3*/site-packages"))


def unpacking(c: Container, venv: str, pattern: str) -> Callable[[], bool]:
    """True while uv is moving the data files of a package matching ``pattern`` into
    ``venv``: its dist-info is in site-packages and so is its NAME-VERSION.data dir (the
    state that left JupyterHub without its templates)."""
    def cond() -> bool:
        for s in site_packages(c, venv):
            for data in s.glob(pattern + ".data"):
                if data.with_suffix(".dist-info").is_dir():
                    return True
        return False
    return cond


def pip_unpacking_uv(c: Container) -> Callable[[], bool]:
    return lambda: any((s / "uv").exists() for s in site_packages(c, HUB))


POINTS: dict[str, Callable[[Container, Background], float]] = {
    "hub-unpack": lambda c, bg: bg.kill_when(unpacking(c, HUB, "jupyterhub-*"),
                                             "uv unpacking jupyterhub into " + HUB),
    "pip-unpack-uv": lambda c, bg: bg.kill_when(pip_unpacking_uv(c),
                                                "pip unpacking uv into " + HUB),
    "user-unpack": lambda c, bg: bg.kill_when(unpacking(c, USER, "*"),
                                              "uv unpacking into " + USER),
    "configuration-files": lambda c, bg: bg.kill_when(
        lambda: bg.saw(r"\] post-install \.\.\."), "configuration files written"),
    "services": lambda c, bg: bg.kill_when(
        lambda: bg.saw(r"\] services \.\.\."), "the services step", delay=0.1),
}
#: where the kill leaves a build half-done: the re-run must say it discarded it
REBUILT = {"hub-unpack": HUB, "pip-unpack-uv": HUB, "user-unpack": USER}


@pytest.fixture(scope="module")
def host():
    c = Container.create("hw-interrupts")
    try:
        c.boot()
        yield Installed(c, "looking-glass-" + os.urandom(4).hex())
    finally:
        c.destroy()


def record_check(c: Container, venv: str) -> str:
    return c.run([f"{venv}/bin/python", "-c", RECORD_CHECK]).stdout.strip()


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_then_rerun_gives_a_working_hub(host: Installed, point: str):
    c = host.c
    c.sh(WIPE)  # nothing to wipe the first time: that one is a fresh container
    bg = Background(host)
    waited = POINTS[point](c, bg)
    partial = "".join(bg.lines)
    marker_left = sorted(p.name for p in c.path(ENVS).glob("*/.hardway-installing")) \
        if c.path(ENVS).is_dir() else []

    r, took = host.bootstrap()
    discarded = [line.strip() for line in r.stdout.splitlines() if "discarded" in line]
    record(f"interrupt-{point}", {"figure": took, "unit": "s", "killed_after": waited,
                                  "markers_left": marker_left, "discarded": discarded,
                                  "how": "bootstrap killed (SIGKILL, process group) at "
                                         f"{point}, then run again to completion"})
    print(f"--- killed at {point} after {waited:.2f} s; output until then:\n"
          f"{partial[-1500:]}\n--- re-run:\n{r.stdout[-2500:]}")

    if point in REBUILT:
        name = REBUILT[point].rsplit("/", 1)[1]
        assert any(re.search(rf"discarded {ENVS}/{name}-\w+ \(its build was interrupted\)",
                             line) for line in discarded), r.stdout[-3000:]

    page = requests.get(host.base + "/hub/login", timeout=30)
    assert page.status_code == 200, page.text[:500]
    assert 'name="password"' in page.text
    u = HubUser(host.base, "alice", host.admin_password).sign_in()
    u.start_server()
    assert u.execute("1+1") == "2"

    for venv in (HUB, USER):
        assert record_check(c, venv) == "clean", venv
        assert not c.path(f"{venv}/.hardway-installing").exists()
    # nothing half-built is left beside them
    left = [p.name for p in c.path(ENVS).iterdir() if (p / ".hardway-installing").exists()]
    assert left == [], left
