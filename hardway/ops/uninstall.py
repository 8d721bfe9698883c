"""`hardway uninstall`: a final backup first, then the services, units, environments,
Traefik, the command and hardway's state go; users' homes and accounts stay unless
``--purge``.

Every step looks at what is there and removes only that, so a run that was interrupted
(Ctrl-C, a dropped session) is finished by running the command again. /opt/hardway,
where this command itself lives, goes last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from hardway.apply import transaction as txn
from hardway.apply.files import locked
from hardway.apply.system import System
from hardway.paths import Paths

from .backup import ACCOUNT_MARKER, ADMIN_GROUP, Account, backup, hub_accounts, user_units
from .install import HUB_UNIT, PROXY_UNIT

NETPOLICY_UNIT = "hardway-netpolicy.service"
NFT_TABLE = "hardway"
PROXY_USER = "hardway-proxy"
UNITS = (HUB_UNIT, PROXY_UNIT, NETPOLICY_UNIT)
#: the suffix of the archives uninstall writes (``--purge`` removes these, no others)
FINAL_SUFFIX = "-uninstall"


@dataclasses.dataclass
class Plan:
    units: list[str]
    files: list[Path]
    #: the units hardway installed (disabled, not only stopped); the others in ``units``
    #: are users' servers (transient)
    installed: list[str]
    trees: list[Path]
    accounts: list[str]


def plan(paths: Paths, system: System,
         accounts: Callable[[], list[Account]] = hub_accounts) -> Plan:
    manifest = txn.read_json(paths.manifest)
    owned = [Path(p) for p in manifest]
    unit_files = [paths.unit(u) for u in UNITS]
    files = sorted({*unit_files, *owned, paths.cli_link})
    trees = [paths.state, paths.etc, paths.cache, paths.log_dir, paths.prefix]
    # every other unit hardway rendered (the proxy's sockets, courses' formgraders,
    # timers): stopped first, so that nothing restarts what goes after it
    helpers = sorted(txn.units_of(manifest) - set(UNITS))
    return Plan(units=[*user_units(system), *helpers, *UNITS], installed=[*helpers, *UNITS],
                files=[f for f in files if os.path.lexists(f)],
                trees=[t for t in trees if os.path.lexists(t)],
                accounts=[a.name for a in accounts()])


def describe(p: Plan, paths: Paths, purge: bool) -> list[str]:
    lines = ["hardway uninstall would:",
             f"  write a final backup archive to {paths.backups}/ (settings, secrets, the hub "
             "database, passwords, certificates), and say where",
             f"  stop and disable: {', '.join(p.units)}; delete the nftables table inet "
             f"{NFT_TABLE}"]
    if shutil.which("docker"):
        lines.append("  remove the docker spawner's users' containers, its network "
                     "hardway-users and the images hardway-user:*, hardway-base:* (Docker "
                     "itself stays)")
    lines += [f"  remove {f}" for f in p.files]
    lines += [f"  remove {t}/ (everything in it)" for t in p.trees]
    lines.append(f"  remove the system user {PROXY_USER} and the group {ADMIN_GROUP}")
    if purge:
        lines.append(f"  remove the unix accounts of hub users AND their homes: "
                     f"{', '.join(p.accounts) or '(none)'}")
        lines.append(f"  remove the final backup archive (*{FINAL_SUFFIX}.tar.gz in "
                     f"{paths.backups}) and the database copies upgrades made "
                     f"({paths.db_backups}/) once everything else is gone")
    else:
        lines.append(f"  keep the unix accounts of hub users and their homes: "
                     f"{', '.join(p.accounts) or '(none)'} (--purge removes them)")
        lines.append(f"  keep the database copies upgrades made ({paths.db_backups}/)")
    lines.append("  keep the Debian packages installed for hardway (nftables, ...)")
    return lines


def kill_processes_of(user: str) -> int:
    """SIGKILL every process running as ``user`` (read from /proc: no procps needed)."""
    import pwd
    import signal

    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return 0
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return killed


def _rm(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        path.unlink()
        return True
    return False


def uninstall(paths: Paths, system: System, purge: bool,
              out: Callable[[str], None] = print,
              accounts: Callable[[], list[Account]] = hub_accounts) -> Path | None:
    """Remove hardway; returns the final archive written (None when there was no state
    left to back up: a second run after an interrupted one). ``accounts``: the hub
    users' unix accounts (tests give their own). Under the writers' lock (while
    /etc/hardway is there to hold it): no reload or backup runs meanwhile."""
    guard = locked(paths.lock_file, "uninstall", out) if paths.etc.is_dir() \
        else contextlib.nullcontext()
    with guard:
        return _uninstall(paths, system, purge, out, accounts)


def _uninstall(paths: Paths, system: System, purge: bool, out: Callable[[str], None],
               accounts: Callable[[], list[Account]]) -> Path | None:
    p = plan(paths, system, accounts)
    archive = None
    if paths.config_file.exists() or paths.hub_db.exists():
        written = backup(paths, suffix=FINAL_SUFFIX)
        archive = written.path
        out(f"hardway: final backup written to {archive} ({written.size / 1e6:.1f} MB); "
            f"`hardway restore {archive}` on a fresh install brings this hub back")
    else:
        earlier = sorted(paths.backups.glob(f"*{FINAL_SUFFIX}.tar.gz")) \
            if paths.backups.is_dir() else []
        out("hardway: no hub state left to back up (an earlier uninstall removed it)"
            + (f"; the last final backup: {earlier[-1]}" if earlier else ""))
    for unit in p.units:
        if unit in p.installed:
            system.systemctl("disable", "--now", unit, check=False)
        else:  # a user's server: a transient unit, nothing to disable
            system.systemctl("stop", unit, check=False)
        out(f"stopped {unit}")
    system.run(["nft", "delete", "table", "inet", NFT_TABLE], check=False)
    if shutil.which("docker"):  # the docker spawner's containers, network and images
        from hardway_plugins.spawner.docker import BRIDGE_UNIT, NETWORK
        from hardway_plugins.spawner.docker_engine import remove_everything

        system.systemctl("disable", "--now", f"{BRIDGE_UNIT}.socket", check=False)
        for line in remove_everything(system, NETWORK):
            out(line)
    for f in p.files:
        if _rm(f):
            out(f"removed {f}")
        txn.drop_in_dir_gone(f)
    system.systemctl("daemon-reload", check=False)
    system.systemctl("reset-failed", check=False)
    for t in p.trees:
        if t == paths.prefix:
            continue  # this command runs from there: last
        if _rm(t):
            out(f"removed {t}/")
    if system.user_exists(PROXY_USER):
        system.run(["userdel", PROXY_USER], check=False)
        out(f"removed the system user {PROXY_USER}")
    if purge:
        for a in accounts():
            kill_processes_of(a.name)
            system.run(["userdel", "--remove", a.name], check=False)
            home = paths.root / a.home.lstrip("/")
            _rm(home)
            with contextlib.suppress(Exception):
                if system.group_exists(a.group):
                    system.run(["groupdel", a.group], check=False)
            out(f"removed unix user {a.name} and {a.home}")
    if system.group_exists(ADMIN_GROUP):
        system.run(["groupdel", ADMIN_GROUP], check=False)
        out(f"removed the group {ADMIN_GROUP}")
    if purge and paths.backups.is_dir():
        for f in sorted(paths.backups.glob(f"*{FINAL_SUFFIX}.tar.gz")):
            f.unlink()
            out(f"removed {f}")
        if _rm(paths.db_backups):  # the database copies upgrades made
            out(f"removed {paths.db_backups}/")
        with contextlib.suppress(OSError):
            paths.backups.rmdir()
        archive = None
    if _rm(paths.prefix):
        out(f"removed {paths.prefix}/")
    kept = [a.name for a in accounts()]
    out("hardway: uninstalled." + (f" Kept the accounts and homes of {', '.join(kept)}."
                                   if kept else "")
        + (f" Final backup: {archive}" if archive else ""))
    return archive


__all__ = ["ACCOUNT_MARKER", "FINAL_SUFFIX", "Plan", "describe", "plan", "uninstall"]
