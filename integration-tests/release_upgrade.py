#!/usr/bin/env python3
"""Outside CI, by hand: a hub on Debian 12 upgraded in place to Debian 13, as an admin
following Debian's release notes would do it.

    sudo .venv/bin/python integration-tests/release_upgrade.py

A fresh Debian 12 container: bootstrap; alice (admin), bob and carol log in and each
leaves a file in their home; inside, the apt sources are switched to trixie and
`apt-get full-upgrade` runs non-interactively; the container reboots; bootstrap runs
again (it rebuilds the venvs for the new Python); then the hub must answer through the
proxy, the three log in with their passwords, find their files, and run a kernel, and
`hardway doctor` must find no problem. Prints each step's time and writes them to
artifacts/release-upgrade.json. Not collected by pytest (its name has no test_ prefix):
it takes several minutes and downloads a whole release.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import Installed, record
from harness import Container, container_slot, log
from hubclient import HubUser, wait_for_hub

USERS = ("bob", "carol")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
KEEP_CONFIG = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def note(name: str) -> str:
    return f"notes of {name}, written on Debian 12"


def users_leave_files(inst: Installed, passwords: dict[str, str]) -> None:
    admin = HubUser(inst.base, "alice", passwords["alice"]).sign_in()
    admin.allow(*USERS)
    for name, password in passwords.items():
        u = admin if name == "alice" else HubUser(inst.base, name, password).sign_in()
        u.start_server()
        u.execute(f"open('notes.txt', 'w').write({note(name)!r})")


def users_find_files(inst: Installed, passwords: dict[str, str]) -> dict[str, str]:
    """Each user logs in, finds their file, runs 1+1; returns the kernel's Python."""
    pythons = {}
    for name, password in passwords.items():
        u = HubUser(inst.base, name, password).sign_in(start_server=True)
        got = u.execute("print(open('notes.txt').read())").strip()
        assert got == note(name), f"{name}'s notes.txt after the upgrade: {got!r}"
        assert u.execute("1+1") == "2", f"{name}'s kernel after the upgrade"
        pythons[name] = u.execute("import platform; print(platform.python_version())").strip()
    return pythons


def main() -> int:
    figures: dict[str, object] = {}
    passwords = {"alice": "wonderland-" + secrets.token_hex(6),
                 **{n: f"{n}-pw-{secrets.token_hex(4)}" for n in USERS}}
    with container_slot():
        c = Container.create("hw-release-upgrade")
        try:
            c.boot()
            inst = Installed(c, passwords["alice"])
            _, figures["bootstrap_bookworm_s"] = inst.bootstrap()
            users_leave_files(inst, passwords)
            figures["python_before"] = c.run(["python3", "--version"]).stdout.split()[-1]

            log("switching apt sources to trixie; apt-get full-upgrade")
            c.sh("sed -i 's/\\bbookworm\\b/trixie/g' /etc/apt/sources.list "
                 "$(ls /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources "
                 "2>/dev/null)")
            t0 = time.monotonic()
            c.run(["apt-get", "update", "-q"], env=APT_ENV, timeout=1200)
            c.run(["apt-get", "full-upgrade", "-y", "-q", *KEEP_CONFIG], env=APT_ENV,
                  timeout=3600)
            figures["full_upgrade_s"] = round(time.monotonic() - t0, 1)
            version = c.run(["cat", "/etc/debian_version"]).stdout.strip()
            assert version.startswith("13"), f"after the upgrade /etc/debian_version: {version}"
            figures["debian_version_after"] = version
            figures["python_after"] = c.run(["python3", "--version"]).stdout.split()[-1]

            t0 = time.monotonic()
            c.reboot()
            figures["reboot_s"] = round(time.monotonic() - t0, 1)
            # before bootstrap runs again: does the old install still answer?
            try:
                wait_for_hub(inst.base, 60)
                figures["hub_answers_before_rerun"] = True
            except AssertionError:
                figures["hub_answers_before_rerun"] = False
                figures["hub_journal_before_rerun"] = c.run(
                    ["journalctl", "-b", "--no-pager", "-o", "cat", "-n", "15",
                     "-u", "jupyterhub"], check=False).stdout[-2000:]

            r, took = inst.bootstrap()
            figures["bootstrap_rerun_s"] = round(took, 1)
            figures["rerun_said"] = [ln for ln in r.stdout.splitlines()
                                     if "rebuilt" in ln or "Python" in ln][:10]
            wait_for_hub(inst.base, 120)
            figures["kernel_python"] = users_find_files(inst, passwords)
            doctor = c.run(["hardway", "doctor"], check=False, timeout=300)
            figures["doctor_exit"] = doctor.returncode
            if doctor.returncode != 0:
                figures["doctor"] = doctor.stdout[-3000:]
        finally:
            c.destroy()
    figures["bootstrap_bookworm_s"] = round(float(figures["bootstrap_bookworm_s"]), 1)
    record("release-upgrade", {**figures, "unit": "s",
                               "how": "Debian 12 hub with 3 users' files, apt sources to "
                                      "trixie, apt-get full-upgrade, reboot, bootstrap again"})
    ok = figures.get("doctor_exit") == 0
    print(json.dumps(figures, indent=1))
    print("release upgrade: " + ("ok" if ok else "hardway doctor found a problem"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
