#!/usr/bin/env python3
"""A class arrives: N users log in and start their servers at the same moment.

    sudo .venv/bin/python benchmarks/class_of_20.py [--users 20] [--rounds 3]

One fresh container with hardway installed; each round uses new users (so every round
creates unix accounts and first-time servers), then stops their servers. Prints JSON:
wall time and per-user p50/p95 for every round, and their medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from harness import Container
from hubclient import HubUser
from scenarios import class_arrives


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    c = Container.create("hw-bench-class")
    rounds = []
    try:
        c.boot()
        c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin",
               "alice:bench-admin-password"], timeout=1800)
        admin = HubUser("http://127.0.0.1", "alice", "bench-admin-password").sign_in()
        for r in range(args.rounds):
            result = class_arrives("http://127.0.0.1", args.users, prefix=f"r{r}s",
                                   admin=admin)
            rounds.append({**result.figures(), "failures": result.failures})
            # stop this round's servers so rounds do not pile up
            c.run(["bash", "-c", "systemctl stop 'jupyter-r*-singleuser.service' || true"])
    finally:
        c.destroy()
    summary = {"figure": f"class_of_{args.users}", "unit": "s",
               "failed_total": sum(r["failed"] for r in rounds),
               "wall_median": statistics.median(r["wall_s"] for r in rounds),
               "p50_median": statistics.median([r["p50_s"] or float("nan") for r in rounds]),
               "p95_median": statistics.median([r["p95_s"] or float("nan") for r in rounds]),
               "rounds": rounds}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
