#!/usr/bin/env python3
"""Time of `hardway config set` + `hardway config reload`, printed as JSON.

    sudo .venv/bin/python benchmarks/reload.py [--runs 5]

In one fresh container with hardway installed:
  hub_change    set limits.memory (alternating 1G/2G) + reload: validates, rewrites
                hub.json, restarts the hub and waits until it answers through the proxy;
  proxy_dynamic set proxy.traefik.response_headers (alternating) + reload: rewrites a
                watched Traefik file, restarts nothing;
  baseline      `systemctl restart jupyterhub` and polling until the hub answers through
                the proxy: the floor any hub-changing reload stands on.
Medians of --runs, every run listed, and the ratio hub_change / baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from harness import Container


def timed(c: Container, *cmds: list[str]) -> float:
    t0 = time.monotonic()
    for cmd in cmds:
        c.run(cmd, timeout=600)
    return time.monotonic() - t0


def wait_hub() -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get("http://127.0.0.1/hub/api/", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError("hub did not come back")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    c = Container.create("hw-bench-reload")
    hub, dyn, base = [], [], []
    try:
        c.boot()
        c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin", "alice"],
              timeout=1800)
        for i in range(args.runs):
            hub.append(timed(c, ["hardway", "config", "set", "limits.memory", f"{1 + i % 2}G"],
                             ["hardway", "config", "reload"]))
            dyn.append(timed(c, ["hardway", "config", "set", "proxy.traefik.response_headers",
                                 f"X-Bench={i}"], ["hardway", "config", "reload"]))
            t0 = time.monotonic()
            c.run(["systemctl", "restart", "jupyterhub"])
            wait_hub()
            base.append(time.monotonic() - t0)
    finally:
        c.destroy()
    out = []
    for name, values, how in (
        ("set_reload_hub_change", hub, "set limits.memory + reload (hub restarts, waits)"),
        ("set_reload_proxy_dynamic", dyn, "set proxy.traefik.response_headers + reload "
                                          "(no restart)"),
        ("baseline_systemctl_restart", base, "systemctl restart jupyterhub until it answers "
                                             "through the proxy"),
    ):
        out.append({"figure": name, "median": round(statistics.median(values), 2), "unit": "s",
                    "runs": [round(v, 2) for v in values], "how": how})
    out.append({"figure": "hub_change_over_baseline", "unit": "ratio",
                "median": round(statistics.median(h / b for h, b in zip(hub, base,
                                                                         strict=True)), 2)})
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
