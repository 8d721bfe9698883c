"""The docker spawner class the hub loads (kept apart so the CLI never imports
JupyterHub or the Docker client)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Any

from dockerspawner import DockerSpawner
from traitlets import Dict, Unicode

from .accounts import UnixAccounts
from .docker_image import write_accounts
from .starting import StartQueue


class HardwayDockerSpawner(UnixAccounts, StartQueue, DockerSpawner):
    """A DockerSpawner whose container runs as the hub user's own unix account (made as
    the systemd spawner makes it), with that account's home mounted at the same path;
    starts queued like the systemd spawner's (one per CPU importing Jupyter at a time)."""

    shared_paths = Dict(
        {}, config=True,
        help="""Host paths every container gets at the same path: {path: "rw" | "ro"}
        (courses: the nbgrader exchange and its configuration). A path missing on the
        host is left out (docker would make it, root-owned).""")

    accounts_dir = Unicode(
        "/run/hardway/container-accounts", config=True,
        help="""Where each container's /etc/passwd and /etc/group are written (root-only
        parent; one directory per account, mounted read-only): the container knows its
        user by name, as the host does (nbgrader's student id is that name).""")

    async def start(self) -> Any:
        await self.ensure_unix_user()
        entry = pwd.getpwnam(self.unix_username)
        home = entry.pw_dir
        shared = {path: {"bind": path, "mode": mode}
                  for path, mode in self.shared_paths.items() if os.path.exists(path)}
        # the account's unix groups from its hub groups (the container does not read the
        # host's /etc/group): by number
        gids = sorted(grp.getgrnam(g).gr_gid for g in self.wanted_unix_groups()
                      if _group_exists(g))
        accounts = write_accounts(Path(self.accounts_dir), entry, gids)
        self.volumes = {**shared, home: {"bind": home, "mode": "rw"},
                        str(accounts / "passwd"): {"bind": "/etc/passwd", "mode": "ro"},
                        str(accounts / "group"): {"bind": "/etc/group", "mode": "ro"}}
        base = self.extra_create_kwargs if isinstance(self.extra_create_kwargs, dict) else {}
        self.extra_create_kwargs = {**base, "user": f"{entry.pw_uid}:{entry.pw_gid}",
                                    "working_dir": home}
        host = dict(self.extra_host_config)
        if gids:
            host["group_add"] = [str(g) for g in gids]
        else:
            host.pop("group_add", None)
        self.extra_host_config = host
        self.environment = {**self.environment, "HOME": home, "USER": entry.pw_name}
        return await self.queued(super().start)

    async def poll(self) -> Any:
        """DockerSpawner's poll (with the reason kept, StartQueue); a container found
        dead is then removed, as a stopped server's is (the hub does not call stop() for
        a server that is already gone)."""
        status = await super().poll()
        if status is not None and self.object_id:
            try:
                await self.remove_object()
            except Exception as e:  # gone already, or docker busy: the next start removes it
                self.log.warning("could not remove %s's stopped container: %s",
                                 self.user.name, e)
            self.object_id = ""
        return status

    async def describe_stop(self, status: Any) -> str:
        """Why her container stopped, from docker's record of it (exit status, the
        memory limit) and its last lines of output: for her, on the hub's pages."""
        container = await self.get_object()
        if not container:
            return "its container was removed (by an administrator or by docker)"
        state = container.get("State") or {}
        code = state.get("ExitCode")
        limit = self.mem_limit
        if code == 137 and state.get("OOMKilled"):
            why = ("it ran out of memory"
                   + (f" (its limit is {limit / 2**20:.0f} MiB)" if limit else ""))
        elif isinstance(code, int) and code > 128:
            why = f"it was killed (signal {code - 128})"
        elif code == 0:
            why = "it shut down (File > Shut Down, or its own idle shutdown)"
        else:
            why = f"it exited with status {code}"
        if state.get("Error"):
            why += f"; docker says: {state['Error']}"
        raw = await self.docker("logs", self.container_id, stdout=True, stderr=True,
                                tail=20)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        lines = [ln.strip()[:240] for ln in text.splitlines() if ln.strip()][-3:]
        return why + (f". Its last output: {' | '.join(lines)}" if lines else "")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
