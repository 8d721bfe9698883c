#!/usr/bin/env python3
"""A class of N arriving at once with the docker spawner, side by side with the systemd
spawner on the same hub in the same run, printed as JSON.

    sudo .venv/bin/python benchmarks/docker_class.py [--users 20] [--rounds 3]

One container booted to run Docker (its own network namespace, offline: hardway from the
tests' wheelhouse, the users' image built locally). Each round, in alternating order,
the spawner is switched (`hardway config set spawner.type` + reload) and N new users log
in and start a server at the same moment (login, spawn, kernel 1+1 through the proxy),
then their servers stop. The clients run inside the container's namespace. Medians of
the rounds of wall time, p50 and p95 per spawner, and the docker/systemd ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

import netns
from conftest import Installed
from harness import Container, container_slot
from test_docker_engine import CLASS, WHEELHOUSE
from wheelhouse import host_wheelhouse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"systemd": [], "docker": []}
    with container_slot():
        c = Container.create("hw-bench-docker", docker=True)
        try:
            c.boot()
            python = c.run(["python3", "-c", "import platform; "
                            "print(platform.python_version())"]).stdout.strip()
            shutil.copytree(host_wheelhouse(python), c.path(WHEELHOUSE))
            inst = Installed(c, "bench-docker-admin-pw")
            inst.bootstrap_args += ["--wheelhouse", WHEELHOUSE]
            inst.bootstrap()
            c.run(["hardway", "config", "set", "limits.memory", "512M"])
            for r in range(args.rounds):
                order = ["systemd", "docker"] if r % 2 == 0 else ["docker", "systemd"]
                for spawner in order:
                    c.run(["hardway", "config", "set", "spawner.type", spawner])
                    c.run(["hardway", "config", "reload", "--timeout", "300"], timeout=900)
                    got = netns.run(c, CLASS, timeout=900, password=inst.admin_password,
                                    n=args.users, prefix=f"{spawner[0]}{r}u")
                    if got["failed"]:
                        raise SystemExit(f"{spawner}: {got['failures']}")
                    runs[spawner].append(got)
        finally:
            c.destroy()

    def med(spawner: str, key: str) -> float:
        return round(statistics.median(x[key] for x in runs[spawner]), 2)

    out = {"figure": f"a class of {args.users} arriving at once", "unit": "s",
           "users": args.users}
    for key in ("wall_s", "p50_s", "p95_s"):
        out[f"systemd_{key}"] = med("systemd", key)
        out[f"docker_{key}"] = med("docker", key)
        out[f"ratio_{key}"] = round(med("docker", key) / med("systemd", key), 3)
    out["runs"] = {k: [{x: r[x] for x in ("wall_s", "p50_s", "p95_s", "failed")} for r in v]
                   for k, v in runs.items()}
    out["how"] = (f"medians of {args.rounds} rounds, spawners alternating on one hub; per "
                  "user: login, spawn, server answering through the proxy, kernel 1+1")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
