"""The wheels an offline install needs, downloaded once on the host and cached (shared by
test_environments.py and test_docker_engine.py, whose containers have no route out)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import CACHE, REPO
from packaging.requirements import Requirement

PINS = [REPO / "hardway" / "pins" / f"{name}.txt" for name in ("hub", "user", "build", "traefik")]


def host_wheelhouse(python: str) -> Path:
    """Every wheel (and the one sdist) an install needs, downloaded once on the host with
    pip and cached by the pins' digest. The pins are a complete lock, so no dependency is
    resolved (--no-deps), and their markers are evaluated for the container's Python
    (``python``, e.g. 3.11.2: some pins differ by python_full_version)."""
    h = hashlib.sha256()
    for p in PINS:
        h.update(p.read_bytes())
    h.update(python.encode())
    dest = CACHE / f"wheelhouse-{h.hexdigest()[:12]}"
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # pip evaluates markers for the Python it runs on, whatever --python-version says:
    # the pins' markers are evaluated here, for the container's Python
    marker_env = {"python_full_version": python,
                  "python_version": ".".join(python.split(".")[:2])}
    env = {**os.environ, "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    requirements = tmp / "requirements.txt"
    for p in PINS:  # one file at a time: build.txt may pin another version than user.txt
        wanted = []
        for line in p.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            req = Requirement(line.rstrip("\\ "))
            if req.marker is None or req.marker.evaluate(marker_env):
                wanted.append(f"{req.name}{req.specifier}")
        requirements.write_text("\n".join(sorted(set(wanted))) + "\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--python-version", python, "--dest", str(tmp), "-r",
                        str(requirements)], check=True, env=env, stdout=subprocess.DEVNULL)
    requirements.unlink()
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
