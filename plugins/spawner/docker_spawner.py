"""The docker spawner class the hub loads (kept apart so the CLI never imports
JupyterHub or the Docker client)."""

from __future__ import annotations

import pwd
from typing import Any

from dockerspawner import DockerSpawner

from .accounts import UnixAccounts
from .starting import StartQueue


class HardwayDockerSpawner(UnixAccounts, StartQueue, DockerSpawner):
    """A DockerSpawner whose container runs as the hub user's own unix account (made as
    the systemd spawner makes it), with that account's home mounted at the same path;
    starts queued like the systemd spawner's (one per CPU importing Jupyter at a time)."""

    async def start(self) -> Any:
        await self.ensure_unix_user()
        entry = pwd.getpwnam(self.unix_username)
        home = entry.pw_dir
        self.volumes = {home: {"bind": home, "mode": "rw"}}
        base = self.extra_create_kwargs if isinstance(self.extra_create_kwargs, dict) else {}
        self.extra_create_kwargs = {**base, "user": f"{entry.pw_uid}:{entry.pw_gid}",
                                    "working_dir": home}
        self.environment = {**self.environment, "HOME": home, "USER": entry.pw_name}
        return await self.queued(super().start)
