"""The proxy class the hub loads (kept apart so the CLI never imports JupyterHub)."""

from __future__ import annotations

import grp
from pathlib import Path
from typing import Any

from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from traitlets import Unicode, default, observe

from hardway.apply.files import read_nofollow, write_atomic


class GroupReadableTomlFile:
    """Writes the hub's route file atomically as root:<group> 0640 so Traefik, running as
    its own user, can read it (the stock handler's temp files are 0600 root)."""

    def __init__(self, path: str, group: str):
        import toml

        self.path = Path(path)
        self.group = group
        self._toml = toml

    def load(self) -> Any:
        # never read through a link planted where the route file belongs
        return self._toml.loads(read_nofollow(self.path).decode())

    def atomic_dump(self, data: Any) -> None:
        try:
            gid = grp.getgrnam(self.group).gr_gid
        except KeyError:
            gid = None
        write_atomic(self.path, self._toml.dumps(data).encode(), 0o640, None, gid)

    dump = atomic_dump


class HardwayTraefikProxy(TraefikFileProviderProxy):
    """jupyterhub-traefik-proxy's file provider, reading its API password from a root-only
    file and writing routes Traefik's own user can read."""

    traefik_api_password_file = Unicode(
        "", config=True, help="File holding the Traefik API password (root-only).")
    proxy_group = Unicode("hardway-proxy", config=True,
                          help="Group Traefik runs as; route files are readable by it.")

    @default("traefik_api_password")
    def _password_from_file(self) -> str:
        if not self.traefik_api_password_file:
            return ""
        return Path(self.traefik_api_password_file).read_text().strip()

    @default("dynamic_config_handler")
    def _default_handler(self) -> GroupReadableTomlFile:
        return GroupReadableTomlFile(self.dynamic_config_file, self.proxy_group)

    @observe("dynamic_config_file")
    def _set_dynamic_config_file(self, change: Any) -> None:
        self.dynamic_config_handler = GroupReadableTomlFile(change.new, self.proxy_group)
