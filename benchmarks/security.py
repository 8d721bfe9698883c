#!/usr/bin/env python3
"""Hardening and login-load figures of a fresh install, printed as JSON.

    sudo .venv/bin/python benchmarks/security.py [--logins 50] [--rounds 3]

In one fresh booted Debian 12 container with hardway installed as the README says:
  exposure      `systemd-analyze security` of jupyterhub.service and
                jupyterhub-proxy.service (0 best, 10 worst; TLJH's hub unit, measured the
                same way: 8.1), and the account the idle culler runs as;
  first_logins  --logins allowed names post the login form at once (bcrypt cost 12) while
                GET /hub/api is polled every 0.2 s: login p50/p95/max and the slowest
                poll, with hardway's authenticator and, as the baseline in the same
                container, firstuse's own class (bcrypt on the hub's event loop). Medians
                over --rounds, every round listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from harness import Container
from test_security import CULLER_USER, exposure, first_logins, upstream_firstuse

HUB = "jupyterhub.service"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--logins", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    c = Container.create("hw-bench-security")
    try:
        c.boot()
        c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin",
               "alice:bench-admin-password"], timeout=1800)
        hub = types.SimpleNamespace(c=c, base="http://127.0.0.1",
                                    admin_password="bench-admin-password")
        scores = {u: exposure(c, u) for u in (HUB, "jupyterhub-proxy.service")}
        culler = c.run(["python3", "-c", CULLER_USER]).stdout.split()
        ours, stock = [], []
        for r in range(args.rounds):
            ours.append(first_logins(hub, f"h{r}u", args.logins))
            with upstream_firstuse(hub):
                stock.append(first_logins(hub, f"s{r}u", args.logins))
    finally:
        c.destroy()

    def med(rounds: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 2)

    keys = ("login_p50_s", "login_p95_s", "slowest_api_s")
    print(json.dumps({
        "exposure": {"figure": scores, "unit": "systemd-analyze security exposure",
                     "how": "fresh install in a booted Debian 12 container",
                     "culler_user": culler[0] if culler else None},
        "first_logins": {
            "figure": {"hardway": {k: med(ours, k) for k in keys},
                       "firstuse_upstream": {k: med(stock, k) for k in keys},
                       "p95_ratio": round(med(ours, "login_p95_s") /
                                          med(stock, "login_p95_s"), 2)},
            "unit": "s", "rounds": {"hardway": ours, "firstuse_upstream": stock},
            "how": f"{args.logins} allowed names log in at once, medians of "
                   f"{args.rounds} rounds in one container; /hub/api polled every 0.2 s"},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
