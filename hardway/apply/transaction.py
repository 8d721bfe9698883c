"""Changes that survive a crash: what a change is about to overwrite is recorded on disk
first, the new files are staged before any of them replaces an old one, and the record
is cleared only once the services answer with the new files.

Three small files under the state directory (all root's, 0600):
  pending-change.json   the files a change is about to touch, as they were before it
                        (content, mode, owner, or "did not exist"), and the command that
                        started it. Present only while a change is under way, or after a
                        change was killed; the next command finishes or undoes it.
  manifest.json         every file hardway rendered last time, with the component that
                        reads it: a file rendered once and no longer rendered is removed.
  running.json          per service, a digest of the files (and code) it was last started
                        with and answered: a service whose rendered files differ from what
                        it *runs* restarts, even if no file changed in this command (a
                        change killed between writing and restarting).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hardway.errors import HardwayError
from hardway.plugin.contract import File

from .files import read_nofollow, write_atomic

HUB_UNIT = "jupyterhub.service"
PROXY_UNIT = "jupyterhub-proxy.service"

RECORD_VERSION = 1


#: the kinds of systemd unit a helper component may name (a socket: its service is
#: started by it; a timer or a path unit: its oneshot service runs when it fires, never at
#: a reload)
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path")


def is_unit_file(path: Path) -> bool:
    """A unit file or a drop-in for one (either needs a daemon-reload)."""
    return path.suffix in UNIT_SUFFIXES or path.parent.name.endswith(
        tuple(f"{s}.d" for s in UNIT_SUFFIXES))


def drop_in_dir_gone(removed: Path) -> bool:
    """After a drop-in's removal: remove its unit's drop-in directory if nothing else is
    in it (a socket whose port changed; an admin's own override keeps it)."""
    if not (is_unit_file(removed) and removed.parent.name.endswith(".d")):
        return False
    try:
        removed.parent.rmdir()
    except OSError:
        return False
    return True


def unit_of(component: str) -> str | None:
    """The systemd unit that must restart when a file of this component changes."""
    if component == "hub":
        return HUB_UNIT
    if component == "proxy":
        return PROXY_UNIT
    if component.endswith(UNIT_SUFFIXES):
        return component
    return None  # "proxy-dynamic" (Traefik's watcher picks it up) or nothing


# --- the record of a change under way


@dataclasses.dataclass
class Pending:
    """An unfinished change found on disk."""

    op: str
    pid: int
    started: str
    saved: dict[str, dict[str, Any]]

    def describe(self) -> str:
        return f"`hardway {self.op}` (pid {self.pid}, started {self.started})"


def load_pending(record: Path) -> Pending | None:
    try:
        data = json.loads(record.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise HardwayError(f"{record} (the record of an unfinished change) cannot be read "
                           f"({e}); look at it, then remove it and run `hardway config "
                           "reload`") from None
    return Pending(data.get("op", "?"), int(data.get("pid", 0)), data.get("started", "?"),
                   data.get("saved", {}))


def snapshot(path: Path) -> dict[str, Any]:
    """``path`` as it is now, enough to put it back: never follows a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"existed": False}
    if not stat.S_ISREG(st.st_mode):
        return {"existed": False}  # a planted link or other oddity: never put back
    return {"existed": True, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
            "gid": st.st_gid, "content": base64.b64encode(read_nofollow(path)).decode()}


def begin(record: Path, op: str, touched: Iterable[Path],
          inherited: Pending | None = None) -> Pending:
    """Write the record of a change about to touch ``touched``. Files an interrupted
    change already recorded keep their older (pre-interruption) state."""
    saved = dict(inherited.saved) if inherited else {}
    for path in touched:
        saved.setdefault(str(path), snapshot(path))
    pending = Pending(op, os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S"), saved)
    if inherited:
        pending.op, pending.started = inherited.op, inherited.started
    data = {"version": RECORD_VERSION, "op": pending.op, "pid": pending.pid,
            "started": pending.started, "saved": saved}
    try:
        write_atomic(record, json.dumps(data).encode(), 0o600, 0, 0)
    except OSError as e:
        raise HardwayError(disk_message(record, e) + "; nothing was changed") from None
    return pending


def restore(pending: Pending) -> list[str]:
    """Put every recorded file back as it was before the change; say what was done."""
    lines = []
    for name, old in sorted(pending.saved.items()):
        path = Path(name)
        if not old.get("existed"):
            if os.path.lexists(path):
                path.unlink()
                lines.append(f"removed {path} (new with the undone change)")
            continue
        content = base64.b64decode(old["content"])
        try:
            now = read_nofollow(path)
            st = os.lstat(path)
            same = (now == content and stat.S_IMODE(st.st_mode) == old["mode"]
                    and (st.st_uid, st.st_gid) == (old["uid"], old["gid"]))
        except OSError:
            same = False
        if not same:
            write_atomic(path, content, old["mode"], old["uid"], old["gid"])
            lines.append(f"restored {path}")
    return lines


def clear(record: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        record.unlink()


def disk_message(path: Path, e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"no space left on the device holding {path.parent}"
    return f"could not write {path}: {e.strerror or e}"


# --- writing a set of files as one step


def commit(changes: Iterable[File], removals: Iterable[Path],
           ids: dict[Path, tuple[int | None, int | None]]) -> None:
    """Stage every new file next to its target (written, fsynced), then rename them all
    into place and remove ``removals``. A failure while staging (a full disk) leaves
    every old file as it was; only renames, which need no space, change anything."""
    staged: list[tuple[str, Path]] = []
    try:
        for f in changes:
            f.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{f.path.name}.", suffix=".tmp",
                                       dir=f.path.parent)
            staged.append((tmp, f.path))
            with os.fdopen(fd, "wb") as out:
                out.write(f.content)
                out.flush()
                os.fchmod(out.fileno(), f.mode)
                uid, gid = ids.get(f.path, (None, None))
                if uid is not None or gid is not None:
                    os.fchown(out.fileno(), -1 if uid is None else uid,
                              -1 if gid is None else gid)
                os.fsync(out.fileno())
    except OSError as e:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        target = staged[-1][1] if staged else Path("?")
        raise HardwayError(disk_message(target, e) + " (while writing " + str(target)
                           + "); nothing was changed: the old files still serve. Free some "
                           "space, then run the command again.") from None
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    dirs = set()
    for tmp, target in staged:
        os.replace(tmp, target)
        dirs.add(target.parent)
    for path in removals:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        dirs.add(path.parent)
        if drop_in_dir_gone(path):
            dirs.discard(path.parent)
            dirs.add(path.parent.parent)
    for d in dirs:
        with contextlib.suppress(OSError):
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


# --- what hardway owns, and what each service runs


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(),
                 0o600, 0, 0)


def units_of(owned: dict[str, str]) -> set[str]:
    """The systemd units named by the components of rendered files (a manifest)."""
    return {u for c in owned.values() if (u := unit_of(c))}


def manifest_of(files: Iterable[File]) -> dict[str, str]:
    return {str(f.path): f.component for f in files}


def digests(owned: dict[str, str], code: dict[str, str] | None = None) -> dict[str, str]:
    """Per unit, a digest of its files as they are on disk (content, mode, owner) and of
    the code it runs (``code``: unit -> fingerprint)."""
    by_unit: dict[str, list[str]] = {}
    for path, component in owned.items():
        unit = unit_of(component)
        if unit is not None:
            by_unit.setdefault(unit, []).append(path)
    out = {}
    for unit, names in by_unit.items():
        h = hashlib.sha256()
        for name in sorted(names):
            h.update(name.encode() + b"\0")
            try:
                st = os.lstat(name)
                h.update(f"{stat.S_IFMT(st.st_mode)}:{stat.S_IMODE(st.st_mode)}:"
                         f"{st.st_uid}:{st.st_gid}\0".encode())
                if stat.S_ISREG(st.st_mode):
                    h.update(hashlib.sha256(read_nofollow(Path(name))).digest())
            except FileNotFoundError:
                h.update(b"missing\0")
        if code and unit in code:
            h.update(b"code\0" + code[unit].encode())
        out[unit] = h.hexdigest()
    return out


@dataclasses.dataclass
class Plan:
    """What one change writes, removes and restarts."""

    changed: list[tuple[File, str]]
    removed: list[Path]
    #: units whose files are all gone (a spawner's helper no longer rendered): stopped
    dropped_units: list[str]
    #: per unit, the digest of what it runs now (recorded, or from disk before writing)
    running: dict[str, str]
    owned: dict[str, str]
    #: hardway had rendered files before (a hub to go back to on failure)
    previous: bool = False

    def touched(self) -> list[Path]:
        return [f.path for f, _ in self.changed] + self.removed

    def unit_files_changed(self) -> bool:
        return any(is_unit_file(p) for p in self.touched())


def plan(files: list[File], changed: list[tuple[File, str]], manifest: Path,
         running_file: Path, code_before: dict[str, str]) -> Plan:
    """Call before writing anything: ``code_before`` is the code each unit ran before
    this command (used only where running.json has no record yet)."""
    old = read_json(manifest)
    owned = manifest_of(files)
    removed = [Path(p) for p in sorted(old) if p not in owned and os.path.lexists(p)]
    before = digests(old or owned, code_before)
    recorded = read_json(running_file)
    running = {u: recorded.get(u) or before.get(u, "") for u in {*before, *recorded}}
    dropped = sorted(units_of(old) - units_of(owned))
    return Plan(changed, removed, dropped, running, owned, bool(old))


def to_restart(p: Plan, code: dict[str, str]) -> set[str]:
    """Units whose files (now on disk) or code differ from what they run."""
    now = digests(p.owned, code)
    return {u for u, d in now.items() if p.running.get(u) != d}


def record_running(running_file: Path, owned: dict[str, str], code: dict[str, str],
                   only: Iterable[str] | None = None) -> None:
    """Record what the units now run: every unit, or ``only`` those (restarted just now;
    the others keep their record)."""
    now = digests(owned, code)
    if only is not None:
        keep = set(only)
        now = {**read_json(running_file), **{u: d for u, d in now.items() if u in keep}}
    write_json(running_file, now)
