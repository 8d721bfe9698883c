"""The spawner class the hub loads (kept apart so the CLI never imports JupyterHub)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re
from typing import Any

from systemdspawner import SystemdSpawner
from traitlets import Unicode

from .systemd import unix_name

_user_lock = asyncio.Lock()  # useradd/usermod must not run concurrently (passwd lock)


class HardwaySystemdSpawner(SystemdSpawner):
    user_prefix = Unicode("jupyter-", config=True, help="Prefix of created unix accounts.")
    admin_group = Unicode("jupyterhub-admins", config=True, help="Unix group of hub admins.")
    home_base = Unicode("/home", config=True, help="Where home directories are created.")

    @property
    def unix_username(self) -> str:
        return unix_name(self.user.name, self.user_prefix)

    def _expand_user_vars(self, string: str) -> str:
        return string.format(USERNAME=self.unix_username, USERID=self.user.id)

    async def _run(self, *cmd: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.decode(errors='replace')}")

    async def ensure_unix_user(self) -> None:
        name = self.unix_username
        marker = owner_comment(self.user.name)
        async with _user_lock:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                home = os.path.join(self.home_base, name)
                await self._run("useradd", "--create-home", "--home-dir", home,
                                "--shell", "/bin/bash", "--user-group", "--comment", marker,
                                "-K", "HOME_MODE=0700", name)
                os.chmod(home, 0o700)
                self.log.info("Created unix user %s for hub user %s", name, self.user.name)
                from hardway import hub

                if hub.current is not None:
                    hub.current.registry.pm.hook.hardway_new_user(
                        unix_name=name, hub_name=self.user.name,
                        admin=bool(self.user.admin), settings=hub.current.settings)
                entry = pwd.getpwnam(name)
            if entry.pw_gecos.split(",")[0] != marker:
                raise RuntimeError(
                    f"unix user {name} belongs to {entry.pw_gecos!r}, not {marker!r}: "
                    "refusing to start this server as that user")
            in_group = name in _group_members(self.admin_group)
            if self.user.admin and not in_group:
                await self._run("usermod", "--append", "--groups", self.admin_group, name)
            elif not self.user.admin and in_group:
                await self._run("gpasswd", "--delete", name, self.admin_group)

    async def start(self) -> Any:
        await self.ensure_unix_user()
        return await super().start()


def owner_comment(hub_name: str) -> str:
    """The unix account's comment field: which hub user owns it (no ':' or ',' allowed)."""
    if re.fullmatch(r"[A-Za-z0-9._@+-]+", hub_name):
        return f"hardway hub user {hub_name}"
    return f"hardway hub user sha256-{hashlib.sha256(hub_name.encode()).hexdigest()[:32]}"


def _group_members(group: str) -> list[str]:
    import grp

    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []
