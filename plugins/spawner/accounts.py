"""The unix account behind each hub user's server, for every spawner that runs servers
as per-user accounts (systemd units, docker containers): made at first spawn, checked to
belong to that hub user, kept in the admins' group when the user is an admin. Kept apart
from the spawner classes so that each imports only its own spawner package."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re

from traitlets import Bool, Dict, Unicode
from traitlets.config import LoggingConfigurable

from .systemd import ACCOUNT_MARKER, EXISTING_NAME, unix_name

_user_lock = asyncio.Lock()  # useradd/usermod must not run concurrently (passwd lock)


class UnixAccounts(LoggingConfigurable):
    """Mixed into a Spawner (which provides ``self.user``)."""

    user_prefix = Unicode("jupyter-", config=True, help="Prefix of created unix accounts.")
    admin_group = Unicode("jupyterhub-admins", config=True, help="Unix group of hub admins.")
    home_base = Unicode("/home", config=True, help="Where home directories are created.")
    existing_users_only = Bool(
        False, config=True,
        help="Run servers as existing accounts (pam): create none, refuse uid < 1000.")
    unix_groups = Dict(
        {}, config=True,
        help="""Hub groups mirrored as unix groups: {hub group: unix group}. At each
        server start the account is in exactly the unix groups its hub groups map to
        (courses: the exchange's course directories belong to such a group).""")

    @property
    def unix_username(self) -> str:
        return unix_name(self.user.name, self.user_prefix, existing=self.existing_users_only)

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
            await self._sync_unix_groups(name)
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
            await self._sync_unix_groups(name)

    def wanted_unix_groups(self) -> set[str]:
        """The unix groups this user's hub groups map to (``unix_groups``)."""
        mine = {g.name for g in getattr(self.user, "groups", [])}
        return {unix for hub, unix in self.unix_groups.items() if hub in mine}

    async def _sync_unix_groups(self, name: str) -> None:
        if not self.unix_groups:
            return
        wanted = self.wanted_unix_groups()
        for group in sorted(set(self.unix_groups.values())):
            in_group = name in _group_members(group)
            if group in wanted and not in_group:
                await self._run("usermod", "--append", "--groups", group, name)
            elif group not in wanted and in_group:
                await self._run("gpasswd", "--delete", name, group)

    async def _sync_admin_group(self, name: str) -> None:
        in_group = name in _group_members(self.admin_group)
        if self.user.admin and not in_group:
            await self._run("usermod", "--append", "--groups", self.admin_group, name)
        elif not self.user.admin and in_group:
            await self._run("gpasswd", "--delete", name, self.admin_group)


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
