"""Issue 12, acceptance 7: hardway installs and runs a kernel on each platform it supports.

The whole suite runs on Debian 12; this module is the smoke test on the others, each in a
fresh booted container: bootstrap exactly as the README tells a user, the hub answers
through the proxy, alice logs in and a kernel in her server computes 1+1, and
`hardway doctor` finds no problem.

Their roots are built ahead by run-tests.sh in the background (`harness.py
prepare-roots`); creating a container waits for a build under way, and one that failed
fails the test with the debootstrap log's path.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from conftest import install_fresh, record
from hubclient import HubUser

#: suite -> (what a user calls it, VERSION_ID in its /etc/os-release)
PLATFORMS = {"trixie": ("Debian 13", "13"), "jammy": ("Ubuntu 22.04", "22.04"),
             "noble": ("Ubuntu 24.04", "24.04")}


@pytest.fixture(scope="module", params=list(PLATFORMS))
def hub(request):
    """A hub freshly installed on one platform (named ``hub`` so that conftest adds its
    journal to a failure)."""
    for inst in install_fresh(f"hw-platform-{request.param}", suite=request.param):
        inst.suite = request.param
        inst.figures = {"bootstrap_s": round(inst.first_seconds, 1)}
        yield inst
        record(f"platform-{request.param}", {
            **inst.figures, "unit": "s",
            "how": "fresh container of the suite: bootstrap.py until the hub answered "
                   "through the proxy; then login, spawn and kernel 1+1 of alice"})


def test_platform_is_the_one_named(hub):
    name, version = PLATFORMS[hub.suite]
    os_release = dict(line.split("=", 1) for line in
                      hub.c.run(["cat", "/etc/os-release"]).stdout.splitlines() if "=" in line)
    assert os_release.get("VERSION_ID", "").strip('"') == version, \
        f"the {hub.suite} container is not {name}: {os_release}"
    hub.figures["python"] = hub.c.run(["python3", "--version"]).stdout.split()[-1]


def test_login_and_kernel_through_the_proxy(hub):
    name = PLATFORMS[hub.suite][0]
    r = requests.get(hub.base + "/", timeout=30)
    assert r.status_code == 200 and 'name="password"' in r.text, \
        f"on {name} the proxy does not serve the hub's login page: {r.status_code} {r.url}"
    t0 = time.monotonic()
    alice = HubUser(hub.base, "alice", hub.admin_password).sign_in()
    alice.start_server()
    reply = alice.execute("1+1")
    hub.figures["login_to_kernel_s"] = round(time.monotonic() - t0, 1)
    assert reply == "2", f"on {name} alice's kernel answered 1+1 with {reply!r}"
    assert alice.unix_user() == "jupyter-alice", f"on {name} alice's kernel runs as another user"


def test_doctor_finds_no_problem(hub):
    r = hub.c.run(["hardway", "doctor", "--json"], check=False, timeout=300)
    assert r.returncode in (0, 1), (r.returncode, r.stdout, r.stderr)
    findings = json.loads(r.stdout)
    hub.figures["doctor_warnings"] = [f["id"] for f in findings if f["status"] == "warning"]
    problems = [f for f in findings if f["status"] == "problem"]
    assert r.returncode == 0 and not problems, \
        f"hardway doctor on {PLATFORMS[hub.suite][0]}: {json.dumps(problems, indent=1)}"
