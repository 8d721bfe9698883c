#!/usr/bin/env python3
"""How fast a route reaches Traefik, printed as JSON.

    sudo .venv/bin/python benchmarks/route_propagation.py [--runs 20]
    sudo .venv/bin/python benchmarks/route_propagation.py --baseline REV [--rounds 2]

In one fresh container with hardway installed, a backend answers on the host loopback
(which the container shares). Each run writes a new route file into Traefik's watched
rules directory, atomically, exactly as the hub's proxy class does for a user's server,
and polls through the proxy every 2 ms:
  route_added    file written -> first 200 through the proxy;
  route_removed  file deleted -> first 404;
  user_server    a real user server: spawn request -> hub says ready -> first 200
                 through the proxy (the "ready -> 200" gap is what users could notice);
  baseline       the same GET straight to the backend: the floor of one poll.
Medians of --runs and every run.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO, Container, container_slot
from hubclient import HubUser

RULES = "/var/lib/hardway/proxy/rules"


class Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def poll(url: str, want: int, timeout: float = 30) -> float:
    t0 = time.monotonic()
    s = requests.Session()
    s.trust_env = False
    while time.monotonic() - t0 < timeout:
        try:
            if s.get(url, timeout=2).status_code == want:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{url} never answered {want}")


def write_route(rules: Path, i: int, port: int) -> Path:
    text = (f'[http.routers.bench{i}]\nrule = "PathPrefix(`/bench{i}/`)"\n'
            f'entryPoints = ["http"]\nservice = "bench{i}"\n'
            f'[http.services.bench{i}.loadBalancer]\n'
            f'[[http.services.bench{i}.loadBalancer.servers]]\nurl = "http://127.0.0.1:{port}"\n')
    fd, tmp = tempfile.mkstemp(prefix=".bench.", suffix=".tmp", dir=rules)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    target = rules / f"90-bench{i}.toml"
    os.replace(tmp, target)
    return target


def measure(source: Path, tag: str, runs: int, port: int) -> dict[str, list[float]]:
    """One fresh container with the tree at ``source`` installed: the figures' runs."""
    c = Container.create(f"hw-bench-routes-{tag}", source)
    added, removed, base, ready_gap, spawn = [], [], [], [], []
    try:
        c.boot()
        c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin",
               "alice:bench-password-123"], timeout=1800)
        rules = c.path(RULES)
        for i in range(runs):
            base.append(poll(f"http://127.0.0.1:{port}/bench{i}/", 200))
            f = write_route(rules, i, port)
            added.append(poll(f"http://127.0.0.1/bench{i}/", 200))
            f.unlink()
            removed.append(poll(f"http://127.0.0.1/bench{i}/", 404))
        alice = HubUser("http://127.0.0.1", "alice", "bench-password-123").sign_in()
        for _ in range(min(runs, 5)):
            t0 = time.monotonic()
            r = alice.api("POST", "/hub/api/users/alice/server")
            assert r.status_code in (201, 202), r.text
            while not ((alice.api("GET", "/hub/api/users/alice").json().get("servers") or {})
                       .get("", {}).get("ready")):
                time.sleep(0.01)
            t_ready = time.monotonic()
            t_200 = t_ready + poll("http://127.0.0.1/user/alice/api/status", 200, 60) \
                if alice.api("GET", "/user/alice/api/status").status_code != 200 else t_ready
            ready_gap.append(t_200 - t_ready)
            spawn.append(t_200 - t0)
            alice.api("DELETE", "/hub/api/users/alice/server")
            poll_gone(alice)
    finally:
        c.destroy()
    return {"route_added": added, "route_removed": removed, "baseline_direct_get": base,
            "user_server_ready_to_200": ready_gap, "user_server_spawn_to_200": spawn}


HOW = {
    "route_added": "route file written atomically into the watched rules dir -> first 200 "
                   "through Traefik (polled every 2 ms)",
    "route_removed": "route file deleted -> first 404 through Traefik",
    "baseline_direct_get": "one GET straight to the backend (floor of a poll)",
    "user_server_ready_to_200": "hub API says the server is ready -> first 200 through "
                                "the proxy",
    "user_server_spawn_to_200": "spawn request -> first 200 through the proxy",
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--baseline", help="also measure this git revision, in the same run "
                   "(one container per tree per round, alternating), and print ratios")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # one booted host at a time holds ports 80/443
    with container_slot(), tempfile.TemporaryDirectory(prefix="hardway-baseline-") as tmp:
        try:
            if not args.baseline:
                got = measure(REPO, "this", args.runs, port)
                print(json.dumps([{"figure": name, "median": round(statistics.median(v), 4),
                                   "unit": "s", "runs": [round(x, 4) for x in v],
                                   "how": HOW[name]} for name, v in got.items()], indent=2))
                return 0
            from against import export

            rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short",
                                  args.baseline], check=True, capture_output=True,
                                 text=True).stdout.strip()
            runs: dict[str, dict[str, list[float]]] = {"baseline": {}, "this": {}}
            trees = {"baseline": export(rev, Path(tmp)), "this": REPO}
            for r in range(args.rounds):
                for tag in (("baseline", "this") if r % 2 == 0 else ("this", "baseline")):
                    for name, values in measure(trees[tag], tag, args.runs, port).items():
                        runs[tag].setdefault(name, []).extend(values)
        finally:
            server.shutdown()
    medians = {tag: {n: round(statistics.median(v), 4) for n, v in got.items()}
               for tag, got in runs.items()}
    print(json.dumps({
        "figure": f"route propagation, this checkout against {rev}", "unit": "s (ratios: "
        "this/baseline, below 1.0 is faster)", "how": f"{args.rounds} rounds of one fresh "
        f"booted container per tree, alternating; {args.runs} routes per container; "
        "medians of every run", "definitions": HOW, "baseline": medians["baseline"],
        "this": medians["this"], "ratios": {
            n: round(medians["this"][n] / medians["baseline"][n], 3)
            for n in medians["this"] if medians["baseline"][n]}}, indent=2))
    return 0


def poll_gone(user: HubUser, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = user.api("GET", f"/hub/api/users/{user.name}").json()
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(0.1)
    raise RuntimeError("server did not stop")


if __name__ == "__main__":
    sys.exit(main())
