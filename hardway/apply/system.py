"""The one seam between hardway and the machine.

Every command (systemctl, useradd, apt-get, uv...) and every ownership lookup goes
through a :class:`System`; tests substitute a recording one. State is parsed by pure
functions (``parse_systemctl_show``).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence

from hardway.errors import SystemError_

log = logging.getLogger("hardway")


def parse_systemctl_show(text: str) -> dict[str, str]:
    """``systemctl show`` output (KEY=VALUE lines) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


class System:
    """Runs commands on the real machine, logging each to the install log."""

    def run(self, cmd: Sequence[str], *, check: bool = True, env: Mapping[str, str] | None = None,
            input: str | None = None, capture: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        log.debug("$ %s", " ".join(cmd))
        full_env = None
        if env is not None:
            full_env = {**os.environ, **env}
        try:
            proc = subprocess.run(
                list(cmd), env=full_env, input=input, text=True, timeout=timeout,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None,
            )
        except FileNotFoundError:
            raise SystemError_(f"command not found: {cmd[0]}") from None
        except subprocess.TimeoutExpired:
            raise SystemError_(f"{' '.join(cmd)} did not finish within {timeout} s") from None
        if capture and proc.stdout:
            log.debug("%s", proc.stdout.rstrip())
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout or "").strip().splitlines()[-15:])
            raise SystemError_(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
        return proc

    # --- systemd
    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def unit_state(self, unit: str) -> dict[str, str]:
        proc = self.run(["systemctl", "show", unit, "--property=ActiveState,SubState,"
                         "UnitFileState,ActiveEnterTimestampMonotonic,NRestarts"], check=False)
        return parse_systemctl_show(proc.stdout or "")

    def journal_tail(self, *units: str, lines: int = 30) -> str:
        cmd = ["journalctl", "--no-pager", "-n", str(lines), "-o", "short-iso"]
        for u in units:
            cmd += ["-u", u]
        return (self.run(cmd, check=False).stdout or "").rstrip()

    # --- facts
    def memory_total(self) -> int:
        """This machine's memory in bytes (MemTotal), 0 when it cannot be read."""
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    # --- users
    def user_exists(self, name: str) -> bool:
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            return False

    def group_exists(self, name: str) -> bool:
        try:
            grp.getgrnam(name)
            return True
        except KeyError:
            return False

    def ids(self, owner: str, group: str) -> tuple[int, int]:
        try:
            return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError as e:
            raise SystemError_(f"no such user or group: {e}") from None
