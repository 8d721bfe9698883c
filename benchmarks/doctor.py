#!/usr/bin/env python3
"""Run time of `hardway doctor --json` on a booted host with hardway installed, printed
as JSON (median of --runs, every run listed).

    sudo .venv/bin/python benchmarks/doctor.py [--runs 5]

One fresh container, bootstrap as the README says, alice's server started (so the route
check compares one route with one server), then doctor --runs times. Takes the container
slot (harness.container_slot) like the integration tests: it waits behind another run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

import harness
from harness import Container
from hubclient import HubUser


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    runs, codes = [], []
    with harness.container_slot():
        c = Container.create("hw-bench-doctor")
        try:
            c.boot()
            c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin",
                   "alice:bench-password-1234"], timeout=1800)
            HubUser("http://127.0.0.1", "alice", "bench-password-1234").sign_in(
                start_server=True)
            for _ in range(args.runs):
                t0 = time.monotonic()
                r = c.run(["hardway", "doctor", "--json"], check=False, timeout=120)
                runs.append(time.monotonic() - t0)
                codes.append(r.returncode)
        finally:
            c.destroy()
    print(json.dumps([{
        "figure": "doctor_run", "median": round(statistics.median(runs), 2), "unit": "s",
        "runs": [round(v, 2) for v in runs], "exit_codes": codes,
        "how": "`hardway doctor --json` (every check) on a healthy hub with one running "
               "server, timed from the host through nsenter"}], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
