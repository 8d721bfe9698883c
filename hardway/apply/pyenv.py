"""Python environments: venvs built for this system Python, filled by uv with pinned
versions, skipped entirely when nothing they depend on changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

from .files import lock_down
from .system import System

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def pins_file(name: str) -> Path:
    return Path(str(resources.files("hardway.pins").joinpath(f"{name}.txt")))


def tool_env(wheelhouse: Path | None = None) -> dict[str, str]:
    """Environment for pip and uv: trust the system CA bundle (TLS-intercepting proxies on
    campus networks put their CA there), never download a Python, keep a root-only cache."""
    env = {"UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": "/var/cache/hardway/uv",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           # a lock held elsewhere becomes an error with uv's own message, not a hang
           "UV_LOCK_TIMEOUT": "120"}
    if CA_BUNDLE.is_file():
        env.setdefault("SSL_CERT_FILE", os.environ.get("SSL_CERT_FILE", str(CA_BUNDLE)))
        env.setdefault("PIP_CERT", os.environ.get("PIP_CERT", str(CA_BUNDLE)))
    if wheelhouse is not None:
        env["UV_OFFLINE"] = "1"
        env["UV_FIND_LINKS"] = str(wheelhouse)
        env["UV_NO_INDEX"] = "1"
        env["PIP_NO_INDEX"] = "1"
        env["PIP_FIND_LINKS"] = str(wheelhouse)
    return env


def base_python() -> str:
    """The system interpreter the hub venv was made from (venvs are rebuilt when it changes)."""
    return getattr(sys, "_base_executable", sys.executable)


def python_version_of(venv: Path) -> str | None:
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except FileNotFoundError:
        return None
    return None


def current_python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


@dataclasses.dataclass
class Env:
    """A venv and what should be in it."""

    path: Path
    requirements: list[str]
    constraints: Path
    compile_bytecode: bool = False
    #: rebuild when the system Python changed (not for the venv hardway runs from:
    #: bootstrap.py rebuilds that one)
    rebuild: bool = True
    #: a requirements file of packages kept out (uv --excludes), removed if present
    excludes: Path | None = None

    @property
    def stamp_file(self) -> Path:
        return self.path / ".hardway-stamp.json"

    def wanted_stamp(self) -> dict[str, object]:
        digest = hashlib.sha256(self.constraints.read_bytes()).hexdigest()
        excluded = self.excluded()
        return {"python": current_python_version(), "requirements": sorted(self.requirements),
                "constraints": digest, "bytecode": self.compile_bytecode, "excludes": excluded}

    def excluded(self) -> list[str]:
        if self.excludes is None:
            return []
        lines = (ln.split("#", 1)[0].strip() for ln in self.excludes.read_text().splitlines())
        return sorted(ln for ln in lines if ln)

    def is_current(self) -> bool:
        try:
            return json.loads(self.stamp_file.read_text()) == self.wanted_stamp()
        except (FileNotFoundError, ValueError):
            return False

    def ensure(self, system: System, uv: str, wheelhouse: Path | None = None) -> list[str]:
        """Create/rebuild the venv and install into it; [] when it was already right."""
        if self.is_current():
            return []
        changes = []
        env = tool_env(wheelhouse)
        have = python_version_of(self.path)
        if self.rebuild and have is not None and have != current_python_version():
            shutil.rmtree(self.path)
            changes.append(f"rebuilt {self.path}: Python changed from {have} to "
                           f"{current_python_version()}")
        if not (self.path / "bin" / "python").exists():
            system.run([uv, "venv", "--python", base_python(), str(self.path)], env=env)
            if not changes:
                changes.append(f"created {self.path}")
        cmd = [uv, "pip", "install", "--python", str(self.path / "bin" / "python"),
               "--constraints", str(self.constraints)]
        if self.compile_bytecode:
            cmd.append("--compile-bytecode")
        if self.excludes is not None:
            cmd += ["--excludes", str(self.excludes)]
        proc = system.run([*cmd, *self.requirements], env=env, timeout=1800)
        if self.excluded():  # an older install may still have them
            gone = system.run([uv, "pip", "uninstall", "--python",
                               str(self.path / "bin" / "python"), *self.excluded()],
                              env=env, check=False)
            if re.search(r"^\s*Uninstalled \d+ package", gone.stdout or "", re.M):
                changes.append(f"removed from {self.path}: {', '.join(self.excluded())}")
        # uv leaves lock files users could hold (stalling the next install) and may
        # create entries others can write: neither survives
        lock_down(self.path)
        self.stamp_file.write_text(json.dumps(self.wanted_stamp(), indent=1) + "\n")
        # uv says "Installed N packages" / "Uninstalled ..." only when it changed something
        if re.search(r"^\s*(Installed|Uninstalled) \d+ package", proc.stdout or "", re.M):
            changes.append(f"installed into {self.path}: {', '.join(self.requirements)}")
        return changes
