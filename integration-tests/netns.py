"""Run hub clients inside a booted container's own network namespace (a container booted
with ``docker=True`` has no route to or from the host: its hub is reachable only there).
The client is this checkout's hubclient, run by the tests' own Python under nsenter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def client(c, script: str, timeout: float = 600, **values: Any) -> subprocess.Popen[str]:
    """Start ``script`` in the namespace of ``c`` (``values`` are JSON-decoded into its
    globals first); it prints its result as its last line, in JSON."""
    head = (f"import json, sys\nsys.path.insert(0, {str(HERE)!r})\n"
            f"globals().update(json.loads({json.dumps(json.dumps(values))}))\n")
    return subprocess.Popen(["nsenter", f"--net=/proc/{c.init_pid}/ns/net", sys.executable,
                             "-c", head + script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str], timeout: float = 600) -> Any:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"client failed ({proc.returncode}):\n{out[-3000:]}\n"
                             f"{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run(c, script: str, timeout: float = 600, **values: Any) -> Any:
    return result(client(c, script, timeout, **values), timeout)
