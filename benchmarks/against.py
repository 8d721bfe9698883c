#!/usr/bin/env python3
"""This checkout against an earlier revision, in the same run, printed as JSON.

    sudo .venv/bin/python benchmarks/against.py --baseline f70cc59 [--rounds 3] [--users 20]

Each round boots one fresh container per tree (the baseline's `git archive`, then this
checkout; the order alternates between rounds so drift on a noisy machine falls on both)
and measures in it:
  install   bootstrap.py --admin alice:PW, empty caches, until the hub answers through
            the proxy;
  reload    `hardway config set limits.memory 1G|2G` + `hardway config reload` (the hub
            restarts and answers again), median of 3;
  class     N new users log in, start a server and run 1+1 at the same moment (the admin
            first allows their names, as both trees accept): wall time and per-user p95.
Prints every round's figures, the medians per tree and the ratios this/baseline (below
1.0 is faster).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from harness import REPO, Container, container_slot
from hubclient import HubUser
from scenarios import class_arrives

PASSWORD = "bench-admin-password"


def export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` as a plain directory (what a fresh clone of it holds)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


BOOTSTRAP_STEP = re.compile(r"^bootstrap \[\d+/\d+\] (.+) \(([0-9.]+) s\)$")
INSTALL_STEP = re.compile(r"^\[\d+/\d+\] (.+) \.\.\.$")
STEP_DONE = re.compile(r"^\s+(?:done|unchanged) \(([0-9.]+) s,")


def steps(output: str) -> dict[str, float]:
    """Seconds per step of bootstrap (from its running clock) and of `hardway install`
    (from its own per-step figures), to see where a difference comes from."""
    out: dict[str, float] = {}
    last: tuple[str, float] | None = None
    title = ""
    for line in output.splitlines():
        if m := BOOTSTRAP_STEP.match(line):
            if last:
                out["bootstrap: " + last[0]] = round(float(m.group(2)) - last[1], 2)
            last = (m.group(1), float(m.group(2)))
        elif m := INSTALL_STEP.match(line):
            title = m.group(1)
        elif (m := STEP_DONE.match(line)) and title:
            out[title] = float(m.group(1))
            title = ""
    return out


def measure(source: Path, tag: str, users: int) -> dict[str, Any]:
    c = Container.create(f"hw-against-{tag}", source)
    try:
        c.boot()
        t0 = time.monotonic()
        r = c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin",
                   f"alice:{PASSWORD}"], timeout=1800)
        out: dict[str, Any] = {"install_s": time.monotonic() - t0,
                               "install_steps": steps(r.stdout)}
        reloads = []
        for value in ("1G", "2G", "1G"):
            t0 = time.monotonic()
            c.run(["hardway", "config", "set", "limits.memory", value])
            c.run(["hardway", "config", "reload"], timeout=600)
            reloads.append(time.monotonic() - t0)
        out["reload_s"] = statistics.median(reloads)
        admin = HubUser("http://127.0.0.1", "alice", PASSWORD).sign_in()
        result = class_arrives("http://127.0.0.1", users, prefix="s", admin=admin)
        if result.failures:
            raise SystemExit(f"{tag}: {len(result.failures)} of the class failed: "
                             f"{result.failures}")
        figures = result.figures()
        out["class_wall_s"] = figures["wall_s"]
        out["class_p95_s"] = figures["p95_s"]
        return out
    finally:
        c.destroy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="a git revision of this repository")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=20)
    args = p.parse_args()
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.baseline],
                         check=True, capture_output=True, text=True).stdout.strip()
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="hardway-baseline-") as tmp, container_slot():
        trees = {"baseline": export(rev, Path(tmp)), "this": REPO}
        for r in range(args.rounds):
            order = ["baseline", "this"] if r % 2 == 0 else ["this", "baseline"]
            rounds.append({tag: measure(trees[tag], tag, args.users) for tag in order})
            print(json.dumps({"round": r, **rounds[-1]}), file=sys.stderr, flush=True)
    names = ("install_s", "reload_s", "class_wall_s", "class_p95_s")
    medians = {tag: {n: round(statistics.median(r[tag][n] for r in rounds), 2)
                     for n in names} for tag in ("baseline", "this")}
    ratios = {n: round(statistics.median(r["this"][n] / r["baseline"][n] for r in rounds), 3)
              for n in names}
    step_medians = {tag: {name: round(statistics.median(
        r[tag]["install_steps"].get(name, 0.0) for r in rounds), 2)
        for name in rounds[0][tag]["install_steps"]} for tag in ("baseline", "this")}
    print(json.dumps({
        "figure": "this checkout against " + rev, "unit": "s (ratios: this/baseline)",
        "how": "per round one fresh booted Debian 12 container per tree, alternating order; "
               f"{args.users} users in the class; medians of {args.rounds} rounds; ratio "
               "medians of the per-round ratios",
        "baseline": medians["baseline"], "this": medians["this"], "ratios": ratios,
        "install_steps_s": step_medians,
        "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
