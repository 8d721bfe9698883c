"""Issue 12 on a booted host: every package at its pinned version and hash.

A wheelhouse inside the container (``hardway install --wheelhouse``, uv offline) serves
the packages a newly chosen authenticator needs, one of them altered: the install refuses
it, names the package and the hash, exits non-zero and leaves the hub environment as it
was. With the genuine wheel the same install succeeds; switching back removes what only
that authenticator needed (the sync).
"""

from __future__ import annotations

import time

import pytest
import requests
from conftest import install_fresh, record
from harness import REPO

from hardway.apply.pinning import pins_by_name, read_pins

HUB_SITE = "/opt/hardway/hub/lib/python3*/site-packages"
WHEELHOUSE = "/root/wheelhouse"
PINS = pins_by_name(read_pins((REPO / "hardway/pins/hub.txt").read_text()))
#: onetimepass has no wheel: building it offline needs the pinned build requirements
BUILD = [f"{p.name}=={p.version}" for p in read_pins((REPO / "hardway/pins/build.txt")
                                                     .read_text())]
NATIVE = f"jupyterhub-nativeauthenticator=={PINS['jupyterhub-nativeauthenticator'][0].version}"
OTP = f"onetimepass=={PINS['onetimepass'][0].version}"

TAMPER = r"""
import glob, os, sys, zipfile
src = glob.glob(sys.argv[1] + "/jupyterhub_nativeauthenticator-*.whl")[0]
os.rename(src, src + ".genuine")
with zipfile.ZipFile(src + ".genuine") as zin, zipfile.ZipFile(src, "w") as zout:
    for item in zin.infolist():
        data = zin.read(item)
        if item.filename == "nativeauthenticator/__init__.py":
            data += b"\nimport os; os.system('id > /tmp/owned')\n"
        zout.writestr(item, data)
"""


@pytest.fixture(scope="module")
def pinned():
    for inst in install_fresh("hw-pins"):
        record("install-cold-hashpins", {"figure": inst.first_seconds, "unit": "s",
                                         "how": "bootstrap.py in a fresh container, "
                                                "every package hash-checked"})
        yield inst


def dists(c) -> list[str]:
    return c.sh(f"cd {HUB_SITE} && ls -d *.dist-info").stdout.split()


def login_page(inst) -> int:
    return requests.get(inst.base + "/hub/login", timeout=30).status_code


def test_01_environments_hold_the_pinned_versions(pinned):
    c = pinned.c
    out = c.run(["hardway", "doctor"], check=False).stdout
    assert out.count("versions match the pins") == 2, out
    t0 = time.monotonic()
    c.run(pinned.bootstrap_args, timeout=1200)
    record("install-rerun-hashpins", {"figure": time.monotonic() - t0, "unit": "s",
                                      "how": "bootstrap.py again, nothing to change"})


def test_02_a_tampered_wheel_is_refused_and_nothing_installed(pinned):
    c = pinned.c
    c.run(["/opt/hardway/hub/bin/python", "-m", "pip", "download", "-q", "--no-deps",
           "-d", WHEELHOUSE, NATIVE, OTP, *BUILD],
          env={"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"})
    c.run(["python3", "-c", TAMPER, WHEELHOUSE])
    before = dists(c)
    assert not [d for d in before if d.startswith(("jupyterhub_nativeauth", "onetimepass"))]
    c.run(["hardway", "config", "set", "auth.type", "native"])
    r = c.run(["hardway", "install", "--wheelhouse", WHEELHOUSE], check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"Hash mismatch for `{NATIVE}`" in out, out
    assert PINS["jupyterhub-nativeauthenticator"][0].hashes[0] in out, out
    assert dists(c) == before  # onetimepass, whose file was genuine, is not there either
    assert c.run(["test", "-e", "/tmp/owned"], check=False).returncode != 0
    assert login_page(pinned) == 200  # the hub runs on, as it was


def test_03_the_genuine_wheel_installs_and_a_switch_back_removes_it(pinned):
    c = pinned.c
    c.sh(f"cd {WHEELHOUSE} && for f in *.genuine; do mv -f $f ${{f%.genuine}}; done")
    c.run(["hardway", "install", "--wheelhouse", WHEELHOUSE], timeout=900)
    names = dists(c)
    assert any(d.startswith("jupyterhub_nativeauthenticator-") for d in names), names
    assert any(d.startswith("onetimepass-") for d in names), names
    c.run(["hardway", "config", "set", "auth.type", "firstuse"])
    out = c.run(["hardway", "config", "reload", "--timeout", "120"], timeout=900).stdout
    assert "(nothing needs them): jupyterhub-nativeauthenticator, onetimepass" in out, out
    assert not [d for d in dists(c) if d.startswith(("jupyterhub_nativeauth", "onetimepass"))]
    assert any(d.startswith("hardway-") for d in dists(c))
    assert login_page(pinned) == 200
