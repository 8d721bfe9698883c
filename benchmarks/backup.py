#!/usr/bin/env python3
"""Time and size of `hardway backup --homes` and `hardway restore` for a 20-user hub,
printed as JSON.

    sudo .venv/bin/python benchmarks/backup.py [--users 20] [--home-mb 5] [--runs 3]

In one fresh container with hardway installed: N hub users (added through the hub's
API) whose unix accounts are made as the systemd spawner makes them (same comment), each
home holding --home-mb MB of files (half random, half text: compressible and not).
Then `backup --homes` (while the hub runs) and `restore` of that archive on the same
host (stops the hub and proxy, writes everything back, reloads until the hub answers).
Medians of --runs, every run listed, and the archive's size.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests"))

from conftest import Installed
from harness import Container, container_slot
from hubclient import HubUser


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--home-mb", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with container_slot():
        c = Container.create("hw-bench-backup")
        try:
            c.boot()
            inst = Installed(c, "bench-password-1234")
            inst.bootstrap()
            names = [f"user{i:02d}" for i in range(args.users)]
            HubUser("http://127.0.0.1", "alice", inst.admin_password).sign_in().allow(*names)
            half = int(args.home_mb * 1024 * 1024 / 2)
            for n in names:
                c.sh(f"useradd --create-home --home-dir /home/jupyter-{n} --shell /bin/bash "
                     f"--user-group --comment 'hardway hub user {n}' jupyter-{n} && "
                     f"head -c {half} /dev/urandom > /home/jupyter-{n}/data.bin && "
                     f"yes 'print(42)  # a notebook cell' | head -c {half} "
                     f"> /home/jupyter-{n}/work.py && chown -R jupyter-{n}: /home/jupyter-{n}")
            backups, restores, sizes = [], [], []
            for _ in range(args.runs):
                t0 = time.monotonic()
                out = c.run(["hardway", "backup", "--homes"], timeout=1200).stdout
                backups.append(time.monotonic() - t0)
                path = re.search(r"backup written to (/\S+)", out).group(1)  # type: ignore[union-attr]
                sizes.append(c.path(path).stat().st_size)
                t0 = time.monotonic()
                c.run(["hardway", "restore", path], timeout=1200)
                restores.append(time.monotonic() - t0)
            print(json.dumps({
                "figure": "backup and restore of a hub with homes", "unit": "s (MB for the "
                "archive)", "users": args.users, "home_mb": args.home_mb,
                "backup_s": round(statistics.median(backups), 2),
                "restore_s": round(statistics.median(restores), 2),
                "archive_mb": round(statistics.median(sizes) / 1e6, 1),
                "runs": {"backup_s": [round(x, 2) for x in backups],
                         "restore_s": [round(x, 2) for x in restores]},
                "how": "fresh container, hub running; restore includes the reload that "
                       "restarts proxy and hub and waits until the hub answers",
            }, indent=2))
        finally:
            c.destroy()


if __name__ == "__main__":
    main()
