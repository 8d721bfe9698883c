"""The spawner class the hub loads (kept apart so the CLI never imports JupyterHub)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re
from typing import Any

from systemdspawner import SystemdSpawner
from traitlets import Bool, Integer, Unicode, default

from .systemd import ACCOUNT_MARKER, EXISTING_NAME, unix_name

_user_lock = asyncio.Lock()  # useradd/usermod must not run concurrently (passwd lock)
_starting: asyncio.Semaphore | None = None


class HardwaySystemdSpawner(SystemdSpawner):
    user_prefix = Unicode("jupyter-", config=True, help="Prefix of created unix accounts.")
    admin_group = Unicode("jupyterhub-admins", config=True, help="Unix group of hub admins.")
    home_base = Unicode("/home", config=True, help="Where home directories are created.")
    existing_users_only = Bool(
        False, config=True,
        help="Run servers as existing accounts (pam): create none, refuse uid < 1000.")
    max_starting = Integer(
        config=True,
        help="""How many servers may be starting (importing Jupyter) at the same moment.

        A server start is ~3 s of CPU. When a class logs in at once, starting all servers
        together shares the CPU evenly and so *everyone* waits as long as the last one;
        letting one per core start at a time gives the same total time but most users
        their server much sooner. Default: the number of CPUs.""")
    max_starting_wait = Integer(
        30, config=True,
        help="Seconds a start may hold its place in the queue before the next one goes.")

    @default("max_starting")
    def _default_max_starting(self) -> int:
        return os.cpu_count() or 2

    @property
    def unix_username(self) -> str:
        return unix_name(self.user.name, self.user_prefix, existing=self.existing_users_only)

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
        if self.existing_users_only:
            if not EXISTING_NAME.fullmatch(name):
                raise RuntimeError(
                    f"no server for {self.user.name}: {name!r} is not a unix account name "
                    "servers can run as (letters, digits, '.', '_' and '-', at most 32, "
                    "not all digits, not starting with '-' or '.')")
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                raise RuntimeError(f"there is no unix account {name!r} to run "
                                   f"{self.user.name}'s server as") from None
            if entry.pw_uid < 1000:
                raise RuntimeError(f"refusing to run a server as system account {name!r} "
                                   f"(uid {entry.pw_uid})")
            await self._sync_admin_group(name)
            return
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
                from hardway.hubside import config as hub

                hub.new_user(name, self.user.name, bool(self.user.admin),
                             warn=self.log.warning)
                entry = pwd.getpwnam(name)
            if entry.pw_gecos.split(",")[0] != marker:
                raise RuntimeError(
                    f"unix user {name} belongs to {entry.pw_gecos!r}, not {marker!r}: "
                    "refusing to start this server as that user")
            await self._sync_admin_group(name)

    async def _sync_admin_group(self, name: str) -> None:
        in_group = name in _group_members(self.admin_group)
        if self.user.admin and not in_group:
            await self._run("usermod", "--append", "--groups", self.admin_group, name)
        elif not self.user.admin and in_group:
            await self._run("gpasswd", "--delete", name, self.admin_group)

    async def start(self) -> Any:
        global _starting
        await self.ensure_unix_user()
        if _starting is None:
            _starting = asyncio.Semaphore(self.max_starting)
        async with _starting:
            result = await super().start()
            if result is None:
                return None
            try:
                await asyncio.wait_for(asyncio.shield(self.wait_for_port(*result)),
                                       self.max_starting_wait)
                return result
            except asyncio.TimeoutError:
                pass  # slow to start: let the next one go, keep waiting outside the queue
        await self.wait_for_port(*result)
        return result

    async def wait_for_port(self, ip: str, port: int) -> None:
        """Return as soon as the server accepts connections (checked every 0.1 s).

        The hub then finds it up at its first check, instead of at the next step of its
        exponential backoff (which cost up to a second per spawn here).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        checks = 0
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.open_connection(ip, port)
            except OSError:
                checks += 1
                if checks % 10 == 0 and await self.poll() is not None:
                    return  # the unit is gone: the hub reports the failure
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return


def owner_comment(hub_name: str) -> str:
    """The unix account's comment field: which hub user owns it (no ':' or ',' allowed)."""
    if re.fullmatch(r"[A-Za-z0-9._@+-]+", hub_name):
        return f"{ACCOUNT_MARKER}{hub_name}"
    return f"{ACCOUNT_MARKER}sha256-{hashlib.sha256(hub_name.encode()).hexdigest()[:32]}"


def _group_members(group: str) -> list[str]:
    import grp

    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []
