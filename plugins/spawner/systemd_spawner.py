"""The spawner class the hub loads (kept apart so the CLI never imports JupyterHub)."""

from __future__ import annotations

import asyncio
from typing import Any

from systemdspawner import SystemdSpawner

from .accounts import UnixAccounts, owner_comment
from .starting import StartQueue

__all__ = ["HardwaySystemdSpawner", "owner_comment"]


class HardwaySystemdSpawner(UnixAccounts, StartQueue, SystemdSpawner):
    def _expand_user_vars(self, string: str) -> str:  # SystemdSpawner's templates
        return string.format(USERNAME=self.unix_username, USERID=self.user.id)

    async def start(self) -> Any:
        await self.ensure_unix_user()
        return await self.queued(super().start)

    async def describe_stop(self, status: Any) -> str:
        """Why her unit stopped, from systemd's record of it and its journal's last
        lines: for her, on the hub's pages."""
        async def output(*cmd: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
            return out.decode("utf-8", "replace")

        props = dict(line.partition("=")[::2] for line in (await output(
            "systemctl", "show", self.unit_name, "--property=LoadState,Result,"
            "ExecMainCode,ExecMainStatus")).splitlines())
        if props.get("LoadState") == "not-found":
            return f"it exited ({status})"
        result, code = props.get("Result", ""), props.get("ExecMainStatus", "")
        if result == "oom-kill":
            why = "it ran out of memory (the memory limit each server has on this hub)"
        elif result == "signal" or props.get("ExecMainCode") == "2":
            why = f"it was killed (signal {code})"
        elif result == "success":
            why = "it shut down (File > Shut Down, or its own idle shutdown)"
        else:
            why = f"it exited with status {code or status}"
        lines = [ln.strip()[:240] for ln in (await output(
            "journalctl", "--unit", self.unit_name, "--lines", "20", "--output", "cat",
            "--no-pager")).splitlines() if ln.strip()][-3:]
        return why + (f". Its last output: {' | '.join(lines)}" if lines else "")
