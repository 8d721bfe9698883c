"""Python environments: venvs built for this system Python, filled by uv with pinned
versions, skipped entirely when nothing they depend on changed.

Every package comes at the version and with a sha256 from hardway/pins (see
``pinning.py``): the pins file is uv's constraints file, and the requirements are turned
into exact lines from it, so uv runs with ``--require-hashes`` and refuses a downloaded
file whose hash is not pinned before installing anything. Only requirements the pins do
not cover (an admin's ``user_environment.packages``, a third-party plugin's) make the run
fall back to checking the hashes of the pinned packages alone. Afterwards the venv is
synced: distributions no requirement needs are uninstalled.

An install that was interrupted (a killed process, a lost SSH session) can leave a
package half-unpacked, and uv trusts what it finds on disk. So a marker file is written
before uv touches a venv and removed only once every installed file matches its
package's RECORD; a run that finds the marker repairs the venv first (see `damage`).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from hardway.errors import SystemError_

from . import pinning
from .files import fsync_dir, lock_down
from .system import System

log = logging.getLogger("hardway")

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: in a venv while a package step may be under way (bootstrap.py writes the same name)
MARKER = ".hardway-installing"
#: what a venv was built with (hardway compares it with what is wanted)
STAMP = ".hardway-stamp.json"


def pins_file(name: str) -> Path:
    return Path(str(resources.files("hardway.pins").joinpath(f"{name}.txt")))


def tool_env(wheelhouse: Path | None = None) -> dict[str, str]:
    """Environment for pip and uv: trust the system CA bundle (TLS-intercepting proxies on
    campus networks put their CA there), never download a Python, keep a root-only cache."""
    env = {"UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": "/var/cache/hardway/uv",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           # a lock held elsewhere becomes an error with uv's own message, not a hang
           "UV_LOCK_TIMEOUT": "120"}
    if CA_BUNDLE.is_file():
        env.setdefault("SSL_CERT_FILE", os.environ.get("SSL_CERT_FILE", str(CA_BUNDLE)))
        env.setdefault("PIP_CERT", os.environ.get("PIP_CERT", str(CA_BUNDLE)))
    if wheelhouse is not None:
        env["UV_OFFLINE"] = "1"
        env["UV_FIND_LINKS"] = str(wheelhouse)
        env["UV_NO_INDEX"] = "1"
        env["PIP_NO_INDEX"] = "1"
        env["PIP_FIND_LINKS"] = str(wheelhouse)
    return env


def base_python() -> str:
    """The system interpreter the hub venv was made from (venvs are rebuilt when it changes)."""
    return getattr(sys, "_base_executable", sys.executable)


def python_version_of(venv: Path) -> str | None:
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except FileNotFoundError:
        return None
    return None


def current_python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def series(version: str | None) -> str | None:
    """"3.11.2" -> "3.11": a venv outlives a patch update of its Python (the interpreter
    it links to is replaced in place, the ABI and site-packages path stay), not a minor one."""
    return None if version is None else ".".join(version.split(".")[:2])


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The package a requirement names ("jupyterhub==6.1.1" -> "jupyterhub")."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return canonical_name(m.group(1)) if m else requirement


def dist_name(dist_info: Path) -> str:
    """A distribution's name: METADATA's Name, else the dist-info directory's."""
    try:
        with open(dist_info / "METADATA", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                if key.lower() == "name" and value.strip():
                    return canonical_name(value.strip())
    except OSError:
        pass
    return canonical_name(dist_info.name.rsplit(".", 1)[0].split("-", 1)[0])


def file_digest(path: Path, algorithm: str) -> str:
    """The RECORD form of a file's hash: urlsafe base64 without padding."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def record_problems(venv: Path, dist_info: Path) -> list[str]:
    """Files of one installed distribution that are missing or differ from its RECORD,
    as "PATH (missing)" / "PATH (changed)". Entries without a hash (RECORD itself,
    bytecode) and paths outside the venv are not checked."""
    site = dist_info.parent
    root = os.path.normpath(venv)
    problems = []
    with open(dist_info / "RECORD", newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[0] or "=" not in row[1]:
                continue
            algorithm, _, expected = row[1].partition("=")
            if algorithm not in hashlib.algorithms_guaranteed:
                continue
            path = os.path.normpath(os.path.join(site, row[0]))
            if not path.startswith(root + os.sep):
                continue
            try:
                if file_digest(Path(path), algorithm) != expected:
                    problems.append(f"{path} (changed)")
            except FileNotFoundError:
                problems.append(f"{path} (missing)")
            except OSError as e:
                problems.append(f"{path} ({e.strerror})")
    return problems


@dataclasses.dataclass
class Damage:
    """What `damage` found in a venv."""

    #: distribution name -> its files that are missing or changed
    files: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: dist-info directories without METADATA or RECORD (uv refuses these) -> name
    incomplete: dict[Path, str] = dataclasses.field(default_factory=dict)
    #: a wheel's NAME-VERSION.data directory left in site-packages: an installer moves
    #: its contents out and removes it, so one left over is half-moved junk
    leftovers: list[Path] = dataclasses.field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return sorted({*self.files, *self.incomplete.values()})

    def __bool__(self) -> bool:
        return bool(self.files or self.incomplete)

    def describe(self) -> str:
        parts = [f"{name} ({len(bad)} file(s) missing or changed, e.g. {bad[0]})"
                 for name, bad in sorted(self.files.items())]
        parts += [f"{name} (no METADATA or RECORD in {path.name})"
                  for path, name in sorted(self.incomplete.items())]
        return "; ".join(parts)


def site_packages(venv: Path) -> list[Path]:
    return sorted(p for p in (venv / "lib").glob("python*/site-packages") if p.is_dir())


def damage(venv: Path) -> Damage:
    """Check every distribution installed in ``venv`` against its RECORD."""
    found = Damage()
    for site in site_packages(venv):
        for data in sorted(p for p in site.glob("*-*.data") if p.is_dir()):
            found.leftovers.append(data)
            dist_info = data.with_suffix(".dist-info")
            if (dist_info / "RECORD").is_file() and (dist_info / "METADATA").is_file():
                # installed, but its data files were never all moved out (the RECORD may
                # still list them where they are, so that check alone would pass)
                found.files.setdefault(dist_name(dist_info), []).append(
                    f"{data} (data files not moved out)")
        for dist_info in sorted(site.glob("*.dist-info")):
            if not dist_info.is_dir():
                continue
            name = dist_name(dist_info)
            if not (dist_info / "METADATA").is_file() or not (dist_info / "RECORD").is_file():
                found.incomplete[dist_info] = name
                continue
            bad = record_problems(venv, dist_info)
            if bad:
                found.files.setdefault(name, []).extend(bad)
    return found


def clear_incomplete(found: Damage) -> None:
    """Remove dist-info directories uv cannot read (it stops on them; it then sees those
    packages as absent and installs them over whatever was half-written) and leftover
    .data directories."""
    for path in [*found.incomplete, *found.leftovers]:
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s (left by an interrupted install)", path)


def hash_checked(requirements: list[str], pins: list[pinning.Pin], venv: Path,
                 overrides: list[str] | None = None) -> list[str]:
    """uv arguments installing ``requirements`` at the pinned versions, every file checked
    against its pinned hash (the hashes are in the constraints file). With requirements
    the pins do not cover, or versions chosen over the pins (``overrides``: a JupyterHub
    other than the pinned one), uv cannot require hashes: it still checks the pinned ones."""
    lines, uncovered = pinning.pinned_requirements(requirements, pins)
    if overrides:
        log.info("%s: chosen over the pins, installed without a pinned hash: %s", venv,
                 ", ".join(overrides))
        return [*lines, *uncovered]
    if not uncovered:
        return ["--require-hashes", *lines]
    log.info("%s: not in hardway's pins, installed without a pinned hash: %s", venv,
             ", ".join(uncovered))
    return [*lines, *uncovered]


@dataclasses.dataclass
class Env:
    """A venv and what should be in it."""

    path: Path
    requirements: list[str]
    constraints: Path
    compile_bytecode: bool = False
    #: rebuild when the system Python changed (not for the venv hardway runs from:
    #: bootstrap.py rebuilds that one)
    rebuild: bool = True
    #: a requirements file of packages kept out (uv --excludes), removed if present
    excludes: Path | None = None
    #: build every new version in its own directory here and then switch ``path`` (a
    #: symlink) to it; None: change the venv at ``path`` in place
    beside: Path | None = None
    #: requirements that replace the pins' versions (uv --override): a chosen JupyterHub
    #: or JupyterLab version other than the pinned one
    overrides: list[str] = dataclasses.field(default_factory=list)
    #: give the venv pip (uv venv --seed): hardway's own tools use it
    seed: bool = False
    #: the file in the venv recording what it was built with
    stamp_name: str = STAMP
    #: what ``path`` named before ``ensure`` switched it (the way back), else None
    previous: Path | None = dataclasses.field(default=None, init=False)
    #: the directory the last beside build made or found
    built: Path | None = dataclasses.field(default=None, init=False)
    #: kept by the sync besides what the requirements need (hardway, uv and pip in the hub
    #: environment), and the distributions declaring entry points in ``keep_groups``
    #: (plugins installed on their own, by bootstrap.py --plugin)
    keep: tuple[str, ...] = ()
    keep_groups: tuple[str, ...] = ()

    @property
    def stamp_file(self) -> Path:
        return self.path / self.stamp_name

    def wanted_stamp(self) -> dict[str, object]:
        digest = hashlib.sha256(self.constraints.read_bytes()).hexdigest()
        excluded = self.excluded()
        stamp: dict[str, object] = {
            "python": series(current_python_version()), "requirements": sorted(self.requirements),
            "constraints": digest, "bytecode": self.compile_bytecode, "excludes": excluded,
            "keep": sorted(self.keep)}
        if self.overrides:
            stamp["overrides"] = sorted(self.overrides)
        return stamp

    def override_args(self, venv: Path) -> list[str]:
        """uv's --override, from a file kept in the venv (what it was built with)."""
        if not self.overrides:
            return []
        path = venv / ".hardway-overrides.txt"
        path.write_text("".join(f"{o}\n" for o in sorted(self.overrides)))
        return ["--override", str(path)]

    def constraints_for(self, venv: Path) -> Path:
        """The pins as uv's constraints; with overrides, without the lines they replace
        (uv applies a constraint on top of an override: both would have to hold)."""
        if not self.overrides:
            return self.constraints
        names = {requirement_name(o) for o in self.overrides}
        kept = [line for line in pinning.logical_lines(self.constraints.read_text())
                if line.startswith("-") or requirement_name(line) not in names]
        path = venv / ".hardway-constraints.txt"
        path.write_text("".join(f"{line}\n" for line in kept))
        return path

    def install_cmd(self, uv: str, venv: Path) -> list[str]:
        """`uv pip install` into ``venv`` as every package step runs it (the requirements
        are added by the caller, through ``hash_checked``)."""
        cmd = [uv, "pip", "install", "--python", str(venv / "bin" / "python"),
               "--constraints", str(self.constraints_for(venv)),
               # what building a package without a wheel needs comes hash-checked too
               "--build-constraints", str(pins_file("build"))]
        if self.compile_bytecode:
            cmd.append("--compile-bytecode")
        if self.excludes is not None:
            cmd += ["--excludes", str(self.excludes)]
        return cmd + self.override_args(venv)

    def excluded(self) -> list[str]:
        if self.excludes is None:
            return []
        lines = (ln.split("#", 1)[0].strip() for ln in self.excludes.read_text().splitlines())
        return sorted(ln for ln in lines if ln)

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def is_current(self) -> bool:
        if self.marker.exists():  # a package step was interrupted
            return False
        try:
            return json.loads(self.stamp_file.read_text()) == self.wanted_stamp()
        except (FileNotFoundError, ValueError):
            return False

    def ensure(self, system: System, uv: str, wheelhouse: Path | None = None,
               switch: bool = True) -> list[str]:
        """Create/rebuild the venv and install into it; [] when it was already right.
        With ``beside``, ``switch=False`` only builds (``built`` names the directory)."""
        if switch and self.is_current():
            return []
        if self.beside is not None:
            return self._build_beside(self.beside, system, uv, wheelhouse, switch)
        changes = []
        env = tool_env(wheelhouse)
        have = python_version_of(self.path)
        if self.rebuild and have is not None and series(have) != series(
                current_python_version()):
            shutil.rmtree(self.path)
            changes.append(f"rebuilt {self.path}: Python changed from {have} to "
                           f"{current_python_version()}")
        if not (self.path / "bin" / "python").exists():
            # a directory left without a Python (`uv venv` cut short) is replaced: uv
            # refuses to create a venv over an existing directory otherwise
            clear = ["--clear"] if self.path.exists() else []
            system.run([uv, "venv", *clear, "--python", base_python(), str(self.path)],
                       env=env)
            if not changes:
                changes.append(f"created {self.path}")
        python = str(self.path / "bin" / "python")
        # a run that was interrupted (the marker is still there) first finds what it left;
        # without the marker the last package step finished and the venv is trusted as it
        # is (reading every file against its RECORD costs seconds on each install)
        interrupted = self.marker.exists()
        found = damage(self.path) if interrupted else Damage()
        self.marker.write_text("a package step is under way; if this file stays, the next "
                               "`hardway install` checks and repairs this environment\n")
        cmd = self.install_cmd(uv, self.path)
        pins = pinning.read_pins(self.constraints.read_text())
        requested = {requirement_name(r) for r in self.requirements}
        repaired: list[str] = []
        for _ in range(2):
            clear_incomplete(found)
            if found:
                log.info("%s: damaged by an interrupted install: %s", self.path,
                         found.describe())
                repaired += [n for n in found.names if n not in repaired]
            # uv reinstalls only what the requirements resolve to: a damaged package
            # outside them (one a plugin added, say) is named as a requirement too
            reinstall = [a for n in found.files for a in ("--reinstall-package", n)]
            extra = [n for n in found.names if n not in requested and n != "hardway"]
            proc = system.run([*cmd, *reinstall, *hash_checked(
                [*self.requirements, *extra], pins, self.path, self.overrides)], env=env,
                timeout=1800)
            if not interrupted:
                break
            found = damage(self.path)  # the repair is checked, and retried once
            if not found:
                break
        if found:
            raise SystemError_(f"{self.path} is still damaged after a repair: "
                               f"{found.describe()}; remove {self.path} and run "
                               f"bootstrap.py again")
        if repaired:
            changes.append(f"repaired {self.path} after an interrupted install: reinstalled "
                           f"{', '.join(repaired)}")
        # the sync: what nothing needs goes (a plugin no longer chosen, its dependencies,
        # an excluded package an older install left)
        stray = pinning.strays(self.path, [*self.requirements, *self.keep], self.keep_groups,
                               self.excluded())
        if stray:
            gone = system.run([uv, "pip", "uninstall", "--python", python, *stray],
                              env=env, check=False)
            if re.search(r"^\s*Uninstalled \d+ package", gone.stdout or "", re.M):
                changes.append(f"removed from {self.path} (nothing needs them): "
                               f"{', '.join(stray)}")
        # uv leaves lock files users could hold (stalling the next install) and may
        # create entries others can write: neither survives
        lock_down(self.path)
        self.stamp_file.write_text(json.dumps(self.wanted_stamp(), indent=1) + "\n")
        self.marker.unlink()
        # uv says "Installed N packages" / "Uninstalled ..." only when it changed something
        if re.search(r"^\s*(Installed|Uninstalled) \d+ package", proc.stdout or "", re.M):
            changes.append(f"installed into {self.path}: {', '.join(self.requirements)}")
        return changes

    def _build_beside(self, beside: Path, system: System, uv: str,
                      wheelhouse: Path | None, switch: bool = True) -> list[str]:
        """Build what is wanted in its own directory (or find it built), then switch."""
        wanted = self.wanted_stamp()
        name = self.path.name
        target = beside / f"{name}-{env_id(wanted)}"
        changes: list[str] = []
        if not is_complete(target, wanted, self.stamp_name) and target.exists() \
                and link_target(self.path) == target.resolve():
            # the one in use lacks its stamp (removed to force a rebuild): never removed
            # under running servers; the new build gets a name of its own
            target = beside / f"{name}-{env_id(wanted)}-{int(time.time())}"
        if is_complete(target, wanted, self.stamp_name):
            changes.append(f"{target} holds this version already (built before): used again")
        else:
            if target.exists() or target.is_symlink():
                shutil.rmtree(target)  # a build that was interrupted: never trusted, redone
                changes.append(f"discarded {target} (its build was interrupted)")
            beside.mkdir(parents=True, exist_ok=True)
            env = tool_env(wheelhouse)
            seed = ["--seed"] if self.seed else []
            system.run([uv, "venv", *seed, "--python", base_python(), str(target)], env=env)
            (target / MARKER).write_text("being built; if this file stays, the build was "
                                         "interrupted and the next run starts it again\n")
            pins = pinning.read_pins(self.constraints.read_text())
            system.run([*self.install_cmd(uv, target),
                        *hash_checked(self.requirements, pins, target, self.overrides)],
                       env=env, timeout=1800)
            lock_down(target)
            (target / self.stamp_name).write_text(json.dumps(wanted, indent=1) + "\n")
            (target / MARKER).unlink()
            changes.append(f"built {target}: {', '.join(self.requirements)}")
        self.built = target
        if not switch:
            return changes
        previous = switch_link(self.path, target)
        if previous != target.resolve():
            self.previous = previous
            was = f" (was {previous.name})" if previous else ""
            changes.append(f"{self.path} -> {target.name}{was}")
        keep = {target.resolve()} | ({self.previous.resolve()} if self.previous else set())
        changes += prune(beside, name, keep)
        return changes


def env_id(stamp: dict[str, object]) -> str:
    """A directory name's suffix for what an environment holds: the same wanted stamp
    gives the same directory, so going back to a previous version finds it built."""
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]


def is_complete(venv: Path, stamp: dict[str, object], name: str = STAMP) -> bool:
    """A venv whose build finished (no marker) and holds what ``stamp`` says."""
    if (venv / MARKER).exists() or not (venv / "bin" / "python").exists():
        return False
    try:
        return json.loads((venv / name).read_text()) == stamp
    except (OSError, ValueError):
        return False


def link_target(link: Path) -> Path | None:
    """The directory a stable environment name stands for: the symlink's target, the
    directory itself for an install from before environments were built side by side."""
    if link.is_symlink():
        return (link.parent / os.readlink(link)).resolve()
    return link if link.is_dir() else None


def switch_link(link: Path, target: Path) -> Path | None:
    """Point ``link`` at ``target`` in one rename (a process starting at any moment sees
    the old environment or the new one, never none); returns what it pointed to. A real
    directory there (an install from before side-by-side builds) is first moved beside
    the others as NAME-legacy: its scripts name ``link``, so pointing ``link`` back at it
    later makes it work again."""
    previous = link_target(link)
    if previous == target.resolve():
        return previous
    if previous is not None and not link.is_symlink():
        legacy = target.parent / f"{link.name}-legacy"
        if legacy.exists():
            shutil.rmtree(legacy)
        os.rename(link, legacy)
        previous = legacy
    tmp = link.with_name(f".{link.name}.switch")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)
    return previous


def in_use(candidates: list[Path], proc: Path = Path("/proc")) -> set[Path]:
    """The directories among ``candidates`` a running process has files mapped from (a
    user's server started from an older environment keeps it until it stops)."""
    if not candidates:
        return set()
    prefixes = {str(c) + os.sep: c for c in candidates}
    used: set[Path] = set()
    for maps in proc.glob("[0-9]*/maps"):
        try:
            text = maps.read_text(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
        for prefix, c in prefixes.items():
            if c not in used and prefix in text:
                used.add(c)
    return used


def prune(beside: Path, name: str, keep: set[Path]) -> list[str]:
    """Remove the built ``name`` environments in ``beside`` but those in ``keep`` (the
    current one and the previous, the way back) and those a process still uses."""
    others = [p for p in sorted(beside.glob(f"{name}-*"))
              if p.is_dir() and not p.is_symlink() and p.resolve() not in keep]
    busy = in_use(others)
    removed = []
    for p in others:
        if p in busy:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(f"removed {p} (an older environment nothing uses)")
    return removed


