#!/usr/bin/env python3
"""How fast a route reaches Traefik, printed as JSON.

    sudo .venv/bin/python benchmarks/route_propagation.py [--runs 20]

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
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from harness import Container
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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    c = Container.create("hw-bench-routes")
    added, removed, base, ready_gap, spawn = [], [], [], [], []
    try:
        c.boot()
        c.run(["python3", "/root/hardway/bootstrap/bootstrap.py", "--admin",
               "alice:bench-password-123"], timeout=1800)
        rules = c.path(RULES)
        for i in range(args.runs):
            base.append(poll(f"http://127.0.0.1:{port}/bench{i}/", 200))
            f = write_route(rules, i, port)
            added.append(poll(f"http://127.0.0.1/bench{i}/", 200))
            f.unlink()
            removed.append(poll(f"http://127.0.0.1/bench{i}/", 404))
        alice = HubUser("http://127.0.0.1", "alice", "bench-password-123").sign_in()
        for _ in range(min(args.runs, 5)):
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
        server.shutdown()
    out = []
    for name, values, how in (
        ("route_added", added, "route file written atomically into the watched rules dir "
                               "-> first 200 through Traefik (polled every 2 ms)"),
        ("route_removed", removed, "route file deleted -> first 404 through Traefik"),
        ("baseline_direct_get", base, "one GET straight to the backend (floor of a poll)"),
        ("user_server_ready_to_200", ready_gap, "hub API says the server is ready -> first "
                                                "200 through the proxy"),
        ("user_server_spawn_to_200", spawn, "spawn request -> first 200 through the proxy"),
    ):
        out.append({"figure": name, "median": round(statistics.median(values), 4), "unit": "s",
                    "runs": [round(v, 4) for v in values], "how": how})
    print(json.dumps(out, indent=2))
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
