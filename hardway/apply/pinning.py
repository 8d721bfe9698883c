"""Hash pins (hardway/pins/*.txt, from `uv pip compile --generate-hashes`) and what an
environment needs: pure functions over text and installed metadata, no commands.

- `read_pins` reads a compiled pins file: one entry per name, version and marker, with
  the sha256 of every file of that version.
- `pinned_requirements` turns what an environment must hold ("oauthenticator",
  "psycopg[binary]") into exact lines from the pins ("psycopg[binary]==3.3.9"), as uv's
  ``--require-hashes`` demands; the hashes themselves come from the pins file given as
  constraints, never from the index.
- `strays` names the installed distributions that no root needs (through Requires-Dist,
  markers and extras evaluated for this interpreter): what a sync removes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from importlib.metadata import PathDistribution
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str  #: canonical
    version: str
    marker: str  #: "" when the pin holds everywhere
    hashes: tuple[str, ...]  #: "sha256:…", one per file of this version


def logical_lines(text: str) -> list[str]:
    """A requirements file's lines with backslash continuations joined, comments gone."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        line = line.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def read_pins(text: str) -> list[Pin]:
    """The entries of a compiled pins file (with or without hashes)."""
    pins = []
    for line in logical_lines(text):
        if line.startswith("-"):
            continue
        words = line.split()
        hashes = tuple(w.split("=", 1)[1] for w in words if w.startswith("--hash="))
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        requirement, _, marker = spec.partition(";")
        name, sep, version = requirement.partition("==")
        if sep:
            pins.append(Pin(canonical_name(name.strip()), version.strip(), marker.strip(),
                            hashes))
    return pins


def pins_by_name(pins: Iterable[Pin]) -> dict[str, list[Pin]]:
    out: dict[str, list[Pin]] = {}
    for pin in pins:
        out.setdefault(pin.name, []).append(pin)
    return out


def pinned_requirements(requirements: Iterable[str], pins: Iterable[Pin]
                        ) -> tuple[list[str], list[str]]:
    """(exact requirement lines taken from the pins, requirements the pins do not cover).

    A requirement is covered when its name is pinned and every pinned version of it (one
    per marker) satisfies it; its extras and marker are kept. One not covered (a URL, a
    package outside the pins, a version the pins do not hold) is returned as given."""
    by_name = pins_by_name(pins)
    lines: list[str] = []
    uncovered: list[str] = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            uncovered.append(text)
            continue
        name = canonical_name(req.name)
        entries = by_name.get(name, [])
        if req.url or not entries or not all(
                req.specifier.contains(p.version, prereleases=True) for p in entries):
            uncovered.append(text)
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        for pin in entries:
            markers = [f"({m})" for m in (pin.marker, str(req.marker or "")) if m]
            line = f"{name}{extras}=={pin.version}"
            lines.append(line + (f" ; {' and '.join(markers)}" if markers else ""))
    return lines, uncovered


# --- what is installed, and what of it is needed


@dataclasses.dataclass(frozen=True)
class Dist:
    name: str  #: canonical
    requires: tuple[str, ...]  #: Requires-Dist
    entry_point_groups: frozenset[str]


def installed(venv: Path) -> dict[str, Dist]:
    """name -> the distribution installed in ``venv`` (from each dist-info's METADATA)."""
    out = {}
    for dist_info in sorted((venv / "lib").glob("python*/site-packages/*.dist-info")):
        dist = PathDistribution(dist_info)
        try:
            name = dist.metadata["Name"]
            groups = frozenset(ep.group for ep in dist.entry_points)
        except (OSError, KeyError):
            continue
        if name:
            name = canonical_name(name)
            out[name] = Dist(name, tuple(dist.requires or ()), groups)
    return out


def _applies(marker: Marker | None, extras: Iterable[str]) -> bool:
    if marker is None:
        return True
    try:
        return any(marker.evaluate({"extra": e}) for e in ("", *extras))
    except (InvalidMarker, ValueError, KeyError):
        return True  # when unsure, keep


def needed(dists: dict[str, Dist], roots: Iterable[str],
           excluded: Iterable[str] = ()) -> set[str]:
    """The names of the installed distributions that ``roots`` (requirement strings) need,
    following Requires-Dist with their markers and extras; ``excluded`` names (uv
    --excludes) are never followed."""
    skip = {canonical_name(n) for n in excluded}
    seen: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = []

    def want(text: str, extras_of_parent: Iterable[str]) -> None:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            todo.append((requirement_name(text), frozenset()))
            return
        if _applies(req.marker, extras_of_parent):
            todo.append((canonical_name(req.name), frozenset(req.extras)))

    for root in roots:
        want(root, ())
    while todo:
        name, extras = todo.pop()
        if name in skip or name not in dists:
            continue
        have = seen.get(name)
        if have is not None and extras <= have:
            continue
        seen[name] = (have or set()) | extras
        for text in dists[name].requires:
            want(text, extras)
    return set(seen)


def requirement_name(requirement: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return canonical_name(m.group(1)) if m else requirement


def strays(venv: Path, roots: Iterable[str], keep_groups: Iterable[str] = (),
           excluded: Iterable[str] = ()) -> list[str]:
    """Installed distributions that nothing needs: not a root, not needed by one, and not
    declaring entry points in one of ``keep_groups`` (a plugin installed on its own)."""
    dists = installed(venv)
    groups = set(keep_groups)
    roots = [*roots, *(d.name for d in dists.values() if d.entry_point_groups & groups)]
    keep = needed(dists, roots, excluded)
    return sorted(name for name in dists if name not in keep)
