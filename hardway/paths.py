"""Every path hardway reads or writes, in one object that tests point at a temp root."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where hardway installs what (see DESIGN.md). ``root`` prefixes every path."""

    root: Path = Path("/")

    def _p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # --- installed software
    @property
    def prefix(self) -> Path:
        return self._p("opt", "hardway")

    @property
    def envs(self) -> Path:
        """Where every built environment lives, each in its own directory (NAME-ID): a new
        version is built beside the running one, which keeps working until the switch."""
        return self.prefix / "envs"

    @property
    def wheels(self) -> Path:
        """hardway's own wheel per source (bootstrap.py builds it from a checkout): what
        `hardway upgrade` installs into a new hub environment."""
        return self.prefix / "wheels"

    @property
    def hub_venv(self) -> Path:
        """The hub's environment (hardway runs from it): a symlink into ``envs``."""
        return self.prefix / "hub"

    @property
    def user_venv(self) -> Path:
        """The users' environment: a symlink into ``envs``."""
        return self.prefix / "user"

    @property
    def traefik_binary(self) -> Path:
        """Outside the environments: switching or rebuilding them never touches it."""
        return self.prefix / "bin" / "traefik"

    @property
    def cli_link(self) -> Path:
        return self._p("usr", "local", "bin", "hardway")

    # --- settings
    @property
    def etc(self) -> Path:
        return self._p("etc", "hardway")

    @property
    def config_file(self) -> Path:
        return self.etc / "config.yaml"

    @property
    def config_d(self) -> Path:
        return self.etc / "config.d"

    @property
    def lock_file(self) -> Path:
        return self.etc / ".lock"

    @property
    def lock_holder(self) -> Path:
        """Who holds the lock (``hardway install`` (pid N)), for a second command to say
        whom it waits for; in /run, so holding the lock changes nothing under /etc."""
        return self._p("run", "hardway", "lock-holder")

    @property
    def cache(self) -> Path:
        """uv's package cache (root-only)."""
        return self._p("var", "cache", "hardway")

    # --- state
    @property
    def state(self) -> Path:
        return self._p("var", "lib", "hardway")

    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    @property
    def netpolicy(self) -> Path:
        """The nftables table confining users' servers (loaded by hardway-netpolicy)."""
        return self.state / "netpolicy.nft"

    @property
    def doctor_token(self) -> Path:
        """The API token of `hardway doctor`'s read-only hub service (root-only)."""
        return self.secrets / "doctor_api_token"

    @property
    def hub_dir(self) -> Path:
        return self.state / "hub"

    @property
    def hub_config_py(self) -> Path:
        return self.hub_dir / "jupyterhub_config.py"

    @property
    def hub_json(self) -> Path:
        return self.hub_dir / "hub.json"

    @property
    def hub_db(self) -> Path:
        return self.state / "jupyterhub.sqlite"

    @property
    def proxy_dir(self) -> Path:
        return self.state / "proxy"

    @property
    def traefik_toml(self) -> Path:
        return self.proxy_dir / "traefik.toml"

    @property
    def rules_dir(self) -> Path:
        return self.proxy_dir / "rules"

    @property
    def routes_file(self) -> Path:
        """Written by the hub (jupyterhub-traefik-proxy) as users' servers come and go."""
        return self.rules_dir / "jupyterhub-routes.toml"

    @property
    def acme_dir(self) -> Path:
        return self.proxy_dir / "acme"

    @property
    def self_signed_cert(self) -> Path:
        return self.secrets / "self-signed.crt"

    @property
    def self_signed_key(self) -> Path:
        return self.secrets / "self-signed.key"

    @property
    def install_state(self) -> Path:
        return self.state / "install-state.json"

    @property
    def pending_change(self) -> Path:
        """The record of a change under way (see hardway.apply.transaction)."""
        return self.state / "pending-change.json"

    @property
    def manifest(self) -> Path:
        """Every file hardway rendered last, with the component that reads it."""
        return self.state / "manifest.json"

    @property
    def running(self) -> Path:
        """Per service, a digest of the files and code it was last started with."""
        return self.state / "running.json"

    @property
    def firstuse_db(self) -> Path:
        return self.state / "firstuse" / "passwords.dbm"

    @property
    def backups(self) -> Path:
        """Where `hardway backup` (and `uninstall`'s final backup) writes archives."""
        return self._p("var", "backups", "hardway")

    # --- logs and units
    @property
    def db_backups(self) -> Path:
        """The hub database as it was before each JupyterHub upgrade (the newest kept)."""
        return self.backups / "database"

    @property
    def log_dir(self) -> Path:
        return self._p("var", "log", "hardway")

    @property
    def install_log(self) -> Path:
        return self.log_dir / "install.log"

    @property
    def cli_log(self) -> Path:
        """Tracebacks of unexpected errors in the CLI (the terminal gets one line)."""
        return self.log_dir / "cli.log"

    @property
    def systemd_dir(self) -> Path:
        return self._p("etc", "systemd", "system")

    def unit(self, name: str) -> Path:
        return self.systemd_dir / name

    @property
    def home(self) -> Path:
        return self._p("home")

    @property
    def jupyter_etc(self) -> Path:
        """Jupyter's system-wide configuration (every user's server reads it)."""
        return self._p("etc", "jupyter")


def default_paths() -> Paths:
    """The paths for this process: ``/`` unless HARDWAY_ROOT points elsewhere (tests)."""
    return Paths(Path(os.environ.get("HARDWAY_ROOT", "/")))
