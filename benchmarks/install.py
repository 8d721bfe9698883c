#!/usr/bin/env python3
"""Install timings on a booted systemd host, printed as JSON.

    sudo .venv/bin/python benchmarks/install.py [--runs 3]

For each run, a fresh container (empty caches) from the cached Debian root:
  cold     bootstrap.py until the hub answers through the proxy;
  rerun    bootstrap.py again with the same flags (nothing to change);
  login_to_kernel
           a new user: login form, token, spawn, kernel 1+1 through the proxy;
  baseline the same container, afterwards: `python3 -m venv` + `pip install` of just the
           hub and user packages (jupyterhub, jupyterlab, notebook), pip cache empty:
           what the packages alone cost the usual way, to compare the cold figure with.
Medians over the runs, with every run's value. The machine is noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from harness import Container
from hubclient import HubUser

BOOTSTRAP = "/root/hardway/bootstrap/bootstrap.py"


def timed(c: Container, cmd: list[str]) -> float:
    t0 = time.monotonic()
    c.run(cmd, timeout=1800)
    return time.monotonic() - t0


def one_run(i: int) -> dict[str, float]:
    c = Container.create(f"hw-bench-{i}")
    try:
        c.boot()
        pw = secrets.token_hex(8)
        cmd = ["python3", BOOTSTRAP, "--admin", f"alice:{pw}"]
        out = {"cold": timed(c, cmd)}
        out["rerun"] = statistics.median(timed(c, cmd) for _ in range(3))
        t0 = time.monotonic()
        u = HubUser("http://127.0.0.1", "alice", pw)
        u.login()
        u.make_token()
        u.start_server()
        assert u.execute("1+1") == "2"
        out["login_to_kernel"] = time.monotonic() - t0
        out["baseline_pip"] = timed(c, [
            "bash", "-c", "python3 -m venv /tmp/baseline && PIP_NO_CACHE_DIR=1 "
            "PIP_CERT=/etc/ssl/certs/ca-certificates.crt /tmp/baseline/bin/pip install -q "
            "jupyterhub==6.1.1 jupyterlab notebook"])
        return out
    finally:
        c.destroy()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    runs = [one_run(i) for i in range(args.runs)]
    figures = []
    how = {
        "cold": "bootstrap.py in a fresh booted Debian 12 container, empty caches, until the "
                "hub answers through the proxy",
        "rerun": "bootstrap.py again with the same flags (median of 3 per container)",
        "login_to_kernel": "new user: login form, API token, spawn, kernel 1+1 over the proxy",
        "baseline_pip": "python3 -m venv + pip install jupyterhub jupyterlab notebook, no cache",
    }
    for name in ("cold", "rerun", "login_to_kernel", "baseline_pip"):
        values = [r[name] for r in runs]
        figures.append({"figure": name, "median": round(statistics.median(values), 2),
                        "runs": [round(v, 2) for v in values], "unit": "s",
                        "how": how[name]})
    ratio = statistics.median(r["cold"] / r["baseline_pip"] for r in runs)
    figures.append({"figure": "cold_over_baseline_pip", "median": round(ratio, 2),
                    "unit": "ratio", "how": "whole hardway install / pip alone installing "
                                            "the packages, same container"})
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
