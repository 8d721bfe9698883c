"""The spawner class the hub loads (kept apart so the CLI never imports JupyterHub)."""

from __future__ import annotations

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
