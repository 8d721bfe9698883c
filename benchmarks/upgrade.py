#!/usr/bin/env python3
"""Time of `hardway upgrade` (JupyterHub 5.5.4 -> hardway's pinned 6.1.1) with 20 users'
servers running, against the same upgrade with none running, printed as JSON.

    sudo .venv/bin/python benchmarks/upgrade.py [--users 20] [--rounds 3]

Each round, in alternating order, two fresh containers: bootstrap.py --jupyterhub 5.5.4,
N users log in at once and start a server (a kernel answers 1+1 in each); in the
baseline their servers are stopped again. Then `hardway upgrade` is timed from the
command to its exit (hub environment built beside, database backed up and migrated,
hub restarted and answering). Medians of the rounds, every run listed, and the ratio
running/baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from conftest import Installed
from harness import Container, container_slot
from hubclient import HubUser
from scenarios import class_arrives

OLD, NEW = "5.5.4", "6.1.1"


def one(users: int, running: bool) -> float:
    c = Container.create("hw-bench-upgrade")
    try:
        c.boot()
        inst = Installed(c, "bench-password-1234")
        inst.bootstrap_args += ["--jupyterhub", OLD]
        inst.bootstrap()
        admin = HubUser(inst.base, "alice", inst.admin_password).sign_in()
        result = class_arrives(inst.base, users, prefix="u", admin=admin)
        if result.failures:
            raise SystemExit(f"the class did not arrive: {result.failures}")
        if not running:
            for i in range(1, users + 1):
                admin.api("DELETE", f"/hub/api/users/u{i:02d}/server")
            deadline = time.monotonic() + 120
            while any(u.get("servers") for u in admin.api("GET", "/hub/api/users").json()):
                if time.monotonic() > deadline:
                    raise SystemExit("servers did not stop")
                time.sleep(1)
        c.run(["hardway", "config", "set", "versions.jupyterhub", NEW])
        t0 = time.monotonic()
        c.run(["hardway", "upgrade"], timeout=1200)
        took = time.monotonic() - t0
        version = admin.s.get(inst.base + "/hub/api/", timeout=10).json()["version"]
        if version != NEW:
            raise SystemExit(f"the hub answers with {version} after the upgrade")
        return took
    finally:
        c.destroy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"running": [], "baseline": []}
    with container_slot():
        for r in range(args.rounds):
            order = [True, False] if r % 2 == 0 else [False, True]
            for running in order:
                runs["running" if running else "baseline"].append(one(args.users, running))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({
        "figure": "hardway upgrade, JupyterHub 5.5.4 -> 6.1.1", "unit": "s",
        "users": args.users,
        "with_servers_running_s": round(med["running"], 1),
        "baseline_no_servers_s": round(med["baseline"], 1),
        "ratio": round(med["running"] / med["baseline"], 3),
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "how": f"medians of {args.rounds} rounds, alternating order, a fresh container per "
               "run; from the command to its exit (the hub answering with the new version)",
    }, indent=2))


if __name__ == "__main__":
    main()
