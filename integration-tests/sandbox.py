#!/usr/bin/env python3
"""Try hardway on a machine without systemd as PID 1: a throwaway Debian 12 container.

    sudo python3 integration-tests/sandbox.py up [--admin NAME[:PASSWORD]]
    sudo python3 integration-tests/sandbox.py shell      # a root shell inside
    sudo python3 integration-tests/sandbox.py down

`up` boots a fresh copy of a cached Debian root with systemd-nspawn (made with
debootstrap the first time, ~1 min), runs bootstrap.py in it exactly as on a real server,
and prints the URL and the login. The container shares this machine's network, so the
hub is at http://127.0.0.1/. It keeps running until `down`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import WORK, Container, log, port_holders

NAME = "hardway-sandbox"
STATE = WORK / f"{NAME}.json"


def up(args: argparse.Namespace) -> int:
    if STATE.exists():
        print(f"a sandbox is already up ({STATE}); `{sys.argv[0]} down` first", file=sys.stderr)
        return 2
    name, sep, password = args.admin.partition(":")
    if not sep:
        password = secrets.token_urlsafe(9)
    c = Container.create(NAME)
    c.boot()
    STATE.write_text(json.dumps({"nspawn": c.proc.pid, "init": c.init_pid, "dir": str(c.dir)}))
    log("running bootstrap.py inside, as a user would")
    t0 = time.monotonic()
    proc = subprocess.run(["nsenter", "-t", str(c.init_pid), "-a", "env", "-i",
                           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "HOME=/root", "LANG=C.UTF-8", "python3",
                           "/root/hardway/bootstrap/bootstrap.py", "--admin",
                           f"{name}:{password}"])
    if proc.returncode != 0:
        print(f"bootstrap failed (exit {proc.returncode}); the container is still up for a "
              f"look: `{sys.argv[0]} shell`, then `{sys.argv[0]} down`", file=sys.stderr)
        return 1
    print(f"\nhardway sandbox is up after {time.monotonic() - t0:.0f} s.\n"
          f"  URL:      http://127.0.0.1/\n"
          f"  login:    {name}\n"
          f"  password: {password}\n"
          f"  inside:   sudo python3 {sys.argv[0]} shell   (try `hardway status`)\n"
          f"  stop:     sudo python3 {sys.argv[0]} down")
    return 0


def load() -> dict[str, object] | None:
    try:
        return json.loads(STATE.read_text())
    except FileNotFoundError:
        return None


def shell(args: argparse.Namespace) -> int:
    state = load()
    if state is None:
        print("no sandbox is up", file=sys.stderr)
        return 2
    return subprocess.call(["nsenter", "-t", str(state["init"]), "-a", "env", "-i",
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "HOME=/root", "TERM=" + os.environ.get("TERM", "xterm"),
                            "bash", "-l"])


def down(args: argparse.Namespace) -> int:
    state = load()
    if state is None:
        print("no sandbox is up")
        return 0
    nspawn, init = int(state["nspawn"]), int(state["init"])  # type: ignore[arg-type]
    try:
        os.kill(init, signal.SIGRTMIN + 4)
    except ProcessLookupError:
        pass
    for _ in range(120):
        if not Path(f"/proc/{nspawn}").exists():
            break
        time.sleep(0.5)
    else:
        os.killpg(nspawn, signal.SIGKILL)
    for _ in range(50):
        if not port_holders():
            break
        time.sleep(0.2)
    subprocess.run(["rm", "-rf", str(state["dir"])], check=False)
    STATE.unlink()
    print("sandbox stopped and removed")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="boot a container and install hardway in it")
    u.add_argument("--admin", default="admin", metavar="NAME[:PASSWORD]",
                   help="the admin to create (a password is generated if not given)")
    u.set_defaults(func=up)
    sub.add_parser("shell", help="a root shell in the sandbox").set_defaults(func=shell)
    sub.add_parser("down", help="stop and remove the sandbox").set_defaults(func=down)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("sandbox.py: run as root (it boots a container): sudo python3 "
              f"{sys.argv[0]} {args.cmd}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
