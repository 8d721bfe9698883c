"""`hardway doctor`: check a running installation and explain each problem with its fix.

Every check returns :class:`Finding` values and never raises for what it finds: a check
that cannot look (a missing tool, a timeout) says so in its finding. Nothing here writes
or restarts anything, and no traffic leaves the machine: the only connections are to
127.0.0.1 (the hub's API, the proxy's TLS port, users' servers), the local systemd and
journal; DNS names are resolved (the resolver may ask its servers) but never contacted.
Every subprocess has a 10 s timeout and every connection 5 s.

The parsing and the decisions are pure functions (``parse_listeners``,
``disk_findings``, ``compare_routes``...) so unit tests can feed them fixtures.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import ipaddress
import json
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hardway import tls
from hardway.errors import HardwayError
from hardway.paths import Paths
from hardway.render import HUB_PORT

OK, PROBLEM, WARNING, SKIPPED = "ok", "problem", "warning", "skipped"

#: a filesystem is short of space when less than this much is free to users...
MIN_FREE_BYTES = 1024**3
#: ...and less than this fraction of it: the smaller of the two is the threshold
MIN_FREE_FRACTION = 0.05
#: a filesystem is short of inodes when less than this fraction of them is free
MIN_FREE_INODES = 0.05
#: a certificate that expires sooner than this is a problem (Traefik renews ACME
#: certificates 30 days ahead and hardway its self-signed one 30 days ahead)
CERT_MIN_DAYS = 14
#: a SQLite hub database bigger than this slows the hub
DB_WARN_BYTES = 1024**3
SUBPROCESS_TIMEOUT = 10.0
NET_TIMEOUT = 5.0

HUB_UNIT = "jupyterhub.service"
PROXY_UNIT = "jupyterhub-proxy.service"
NETPOLICY_UNIT = "hardway-netpolicy.service"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing doctor looked at. ``status`` is ok, problem (exit 1), warning (said,
    exit unchanged: doctor cannot tell whether it is wrong) or skipped (not applicable or
    not measurable here, with why)."""

    id: str
    status: str
    what: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.status == PROBLEM for f in findings) else 0


def to_json(findings: Iterable[Finding]) -> str:
    return json.dumps([f.as_json() for f in findings], indent=2) + "\n"


# --- who holds a port


@dataclasses.dataclass(frozen=True)
class Listener:
    address: str
    port: int
    inode: int


def _hex_address(text: str) -> str:
    """/proc/net/tcp's address (little-endian 32-bit words) as an IP address."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def parse_listeners(text: str) -> list[Listener]:
    """The listening sockets (state 0A) in a /proc/net/tcp or tcp6 file."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":
            continue
        address, _, port = fields[1].partition(":")
        try:
            out.append(Listener(_hex_address(address), int(port, 16), int(fields[9])))
        except ValueError:
            continue
    return out


@dataclasses.dataclass(frozen=True)
class Process:
    pid: int
    command: str
    exe: str


def socket_owners(inodes: set[int], proc: Path = Path("/proc")) -> dict[int, list[Process]]:
    """Which processes hold each socket inode (by their /proc/PID/fd links)."""
    found: dict[int, list[Process]] = {}
    if not inodes:
        return found
    wanted = {f"socket:[{i}]": i for i in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        held = set()
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                held.add(wanted[target])  # every one: Traefik holds 80 and 443
        if held:
            process = _process(entry)
            for inode in held:
                found.setdefault(inode, []).append(process)
    return found


def _process(entry: Path) -> Process:
    try:
        argv = (entry / "cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)
    except OSError:
        command = ""
    if not command:
        try:
            command = f"[{(entry / 'comm').read_text().strip()}]"
        except OSError:
            command = "?"
    try:
        exe = os.readlink(entry / "exe")
    except OSError:
        exe = ""
    return Process(int(entry.name), command, exe)


def in_proxy_unit(pid: int) -> bool:
    """Whether a process runs in the proxy's service (the gate's watcher holds its
    sockets too)."""
    try:
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    # the system's unit, not a user's own unit of that name
    return any(line.rstrip().endswith(f"/system.slice/{PROXY_UNIT}")
               for line in cgroups.splitlines())


#: the proxy and its sockets (systemd's, on its ports) started again, in the order systemd
#: accepts (a socket does not start while its service runs)
RESTART_PROXY = ("`systemctl stop jupyterhub-proxy && systemctl start "
                 "'jupyterhub-proxy-*.socket' jupyterhub-proxy`")


def port_findings(wanted: Mapping[int, bool], listeners: list[Listener],
                  owners: Mapping[int, list[Process]],
                  ours: Callable[[Process], bool]) -> list[Finding]:
    """``wanted``: port -> whether hardway's proxy must listen on it (a configured port)
    or not (80/443 while unused: another program there is only in the way of turning
    HTTPS on). Another program holding a configured port is a problem, and so is a
    configured port nobody holds."""
    out = []
    for port, needed in sorted(wanted.items()):
        here = [ln for ln in listeners if ln.port == port]
        procs = [p for ln in here for p in owners.get(ln.inode, [])]
        others = [p for p in procs if not ours(p)]
        unseen = [ln for ln in here if not owners.get(ln.inode)]
        fid = f"port.{port}"
        if others:
            names = "; ".join(f"pid {p.pid} ({p.command[:120]})"
                              for p in dict.fromkeys(others))
            out.append(Finding(
                fid, PROBLEM if needed else WARNING,
                f"port {port} is held by another process: {names}" + (
                    "" if needed else " (hardway does not use it now; turning HTTPS on "
                    "would fail)"),
                "stop that program or move it to another port (`systemctl stop ...` or "
                f"`kill {others[0].pid}`), then {RESTART_PROXY}; or "
                "give hardway another port: `hardway config set http.port N` (or "
                "https.port) and `hardway config reload`"))
        elif unseen and not procs:
            addresses = ", ".join(sorted({ln.address for ln in unseen}))
            out.append(Finding(
                fid, PROBLEM if needed else WARNING,
                f"port {port} is held on {addresses} by a process not visible here (another "
                "container or network namespace?)",
                f"find it with `ss -ltnp 'sport = :{port}'` on the host and stop it"))
        elif procs:
            out.append(Finding(fid, OK, f"port {port}: hardway's Traefik listens"))
        elif needed:
            out.append(Finding(
                fid, PROBLEM, f"nothing listens on port {port}; hardway's proxy should",
                f"{RESTART_PROXY}; if it fails: `journalctl -u "
                "jupyterhub-proxy -n 50`"))
        else:
            out.append(Finding(fid, OK, f"port {port} is free"))
    return out


# --- disk and inodes


@dataclasses.dataclass(frozen=True)
class Space:
    paths: tuple[str, ...]
    size: int
    avail: int
    files: int
    favail: int


def statvfs_spaces(paths: Iterable[Path]) -> list[Space]:
    """One Space per filesystem under ``paths`` (existing ones), naming every path on it."""
    by_dev: dict[int, tuple[list[str], os.statvfs_result]] = {}
    for path in paths:
        try:
            dev = path.stat().st_dev
            st = os.statvfs(path)
        except OSError:
            continue
        by_dev.setdefault(dev, ([], st))[0].append(str(path))
    return [Space(tuple(names), st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize,
                  st.f_files, st.f_favail) for names, st in by_dev.values()]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def disk_findings(spaces: Iterable[Space]) -> list[Finding]:
    out = []
    for s in spaces:
        where = ", ".join(s.paths)
        fid = f"disk.{s.paths[0]}"
        threshold = min(MIN_FREE_BYTES, s.size * MIN_FREE_FRACTION)
        pct = 100 * s.avail / s.size if s.size else 0
        if s.size and s.avail < threshold:
            out.append(Finding(
                fid, PROBLEM, f"{where}: {_size(s.avail)} free of {_size(s.size)} ({pct:.1f} "
                f"%), under the threshold of {_size(threshold)} (the smaller of "
                f"{_size(MIN_FREE_BYTES)} and {MIN_FREE_FRACTION:.0%})",
                f"free space on {s.paths[0]}: `du -xsh {s.paths[0]}/* | sort -h` shows what "
                "is big; servers fail to start and notebooks fail to save on a full disk"))
        else:
            out.append(Finding(fid, OK, f"{where}: {_size(s.avail)} free of "
                                        f"{_size(s.size)} ({pct:.1f} %)"))
        if s.files:  # some filesystems (btrfs) report no inode count
            ipct = s.favail / s.files
            if ipct < MIN_FREE_INODES:
                out.append(Finding(
                    f"inodes.{s.paths[0]}", PROBLEM,
                    f"{where}: {s.favail} of {s.files} inodes free ({100 * ipct:.1f} %), "
                    f"under {MIN_FREE_INODES:.0%}",
                    f"find directories with many small files: `du -x --inodes {s.paths[0]} "
                    "| sort -n | tail`, and remove what is not needed"))
            else:
                out.append(Finding(f"inodes.{s.paths[0]}", OK,
                                   f"{where}: {100 * ipct:.1f} % of inodes free"))
    return out


# --- routes against servers


@dataclasses.dataclass(frozen=True)
class Route:
    routespec: str
    target: str
    user: str
    server: str


def parse_routes(config: Mapping[str, Any]) -> list[Route]:
    """The users' routes jupyterhub-traefik-proxy's file provider keeps in its rules file:
    ``jupyterhub.routes.<router alias> = {routespec, target, data: {user, server_name}}``
    (the hub's own route and services' routes carry no ``user``)."""
    out = []
    routes = (config.get("jupyterhub") or {}).get("routes") or {}
    for r in routes.values():
        data = r.get("data") or {}
        if "user" in data:
            out.append(Route(str(r.get("routespec", "")), str(r.get("target", "")),
                             str(data["user"]), str(data.get("server_name") or "")))
    return out


def active_servers(users: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    """(user, server name) -> ready, from the hub's /hub/api/users?state=active."""
    out = {}
    for u in users:
        for name, s in (u.get("servers") or {}).items():
            out[(str(u["name"]), str(name or ""))] = bool(s.get("ready"))
    return out


def _label(user: str, server: str) -> str:
    return f"{user}'s server" if not server else f"{user}'s server {server!r}"


RESYNC = ("`systemctl restart jupyterhub`: at start the hub makes the proxy's routes match "
          "its servers (running servers keep running); it also does so every 5 minutes")


def compare_routes(routes: list[Route], servers: Mapping[tuple[str, str], bool],
                   answers: Callable[[str], bool]) -> list[Finding]:
    """Routes with no running server behind them, and ready servers with no route.
    ``answers(target)`` says whether something accepts connections at a route's target."""
    problems = []
    routed = {(r.user, r.server) for r in routes}
    for r in routes:
        key = (r.user, r.server)
        if key not in servers:
            problems.append(Finding(
                "routes", PROBLEM, f"a stale route: {r.routespec} -> {r.target} for "
                f"{_label(*key)}, which the hub does not run", RESYNC))
        elif servers[key] and not answers(r.target):
            problems.append(Finding(
                "routes", PROBLEM, f"{r.routespec} -> {r.target}: the hub counts "
                f"{_label(*key)} as running but nothing answers there",
                "stop it from the hub's admin page (or `systemctl restart jupyterhub`, "
                "which checks every server); the user can then start it again"))
    for key, ready in sorted(servers.items()):
        if ready and key not in routed:
            problems.append(Finding(
                "routes", PROBLEM, f"{_label(*key)} runs but the proxy has no route to it",
                RESYNC))
    if problems:
        return problems
    n = sum(1 for ready in servers.values() if ready)
    return [Finding("routes", OK, f"{len(routes)} route(s) to users' servers, {n} running "
                                  "server(s): they match")]


# --- environments against pins


def parse_pins(text: str) -> dict[str, set[str]]:
    """name -> the versions a uv-compiled pins file allows (one per marker line; the
    ``--hash`` continuation lines are read past)."""
    from hardway.apply.pinning import read_pins

    out: dict[str, set[str]] = {}
    for pin in read_pins(text):
        out.setdefault(pin.name, set()).add(pin.version)
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(venv: Path) -> dict[str, str]:
    """name -> version of each distribution in the venv, from its METADATA."""
    out = {}
    for site in sorted((venv / "lib").glob("python*/site-packages")):
        for meta in site.glob("*.dist-info/METADATA"):
            name = version = None
            try:
                with meta.open(encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if line.startswith("Name:"):
                            name = line[5:].strip()
                        elif line.startswith("Version:"):
                            version = line[8:].strip()
                        if (name and version) or not line.strip():
                            break
            except OSError:
                continue
            if name and version:
                out[_canonical(name)] = version
    return out


def pin_mismatches(installed: Mapping[str, str], pins: Mapping[str, set[str]]) -> list[str]:
    return [f"{name} {version} (pinned {' or '.join(sorted(pins[name]))})"
            for name, version in sorted(installed.items())
            if name in pins and version not in pins[name]]


# --- the checks themselves


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    """A command's result, or None when it is missing or took longer than 10 s."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


class Doctor:
    """Gathers what the checks look at. ``settings`` is None when they do not load."""

    def __init__(self, paths: Paths, settings: Any, settings_error: str = "",
                 registry: Any = None):
        self.paths = paths
        self.settings = settings
        self.settings_error = settings_error
        self.registry = registry

    def run(self) -> list[Finding]:
        checks: list[Callable[[], list[Finding]]] = [
            self.pending, self.settings_check, self.units, self.ports, self.routes,
            self.certificate, self.dns, self.disk, self.clock, self.environments,
            self.database, self.choices]
        out: list[Finding] = []
        for check in checks:
            name = check.__name__
            try:
                out += check()
            except HardwayError as e:
                out.append(Finding(name, PROBLEM, str(e), "see the message"))
            except Exception as e:  # a check that breaks must not hide the others
                out.append(Finding(name, WARNING, f"the check itself failed: "
                                   f"{type(e).__name__}: {e}", "report this as a bug"))
        return out

    # settings and interrupted changes
    def pending(self) -> list[Finding]:
        if self.paths.pending_change.exists():
            return [Finding("pending-change", PROBLEM,
                            f"an interrupted change: {self.paths.pending_change} is present "
                            "(a hardway command was killed mid-change)",
                            "run `hardway config reload` (it finishes the change, or puts "
                            "the previous files back)")]
        return [Finding("pending-change", OK, "no interrupted change")]

    def settings_check(self) -> list[Finding]:
        if self.settings is None:
            return [Finding("settings", PROBLEM, f"the settings do not load: "
                            f"{self.settings_error}", "`hardway config validate`, fix what it "
                            "names, then `hardway config reload`")]
        return [Finding("settings", OK, f"{self.paths.config_file} is valid")]

    # units
    def units(self) -> list[Finding]:
        out = []
        for unit in (HUB_UNIT, PROXY_UNIT, NETPOLICY_UNIT):
            r = _run(["systemctl", "show", unit, "--property=LoadState,ActiveState,SubState"])
            if r is None:
                out.append(Finding(f"unit.{unit}", WARNING, "systemctl did not answer in "
                                   f"{SUBPROCESS_TIMEOUT:.0f} s", "`systemctl status`"))
                continue
            props = dict(ln.partition("=")[::2] for ln in r.stdout.splitlines())
            if props.get("LoadState") == "not-found" and unit == NETPOLICY_UNIT:
                continue  # not every installation confines servers' network
            state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
            if props.get("ActiveState") == "active":
                out.append(Finding(f"unit.{unit}", OK, f"{unit}: {state}"))
            else:
                out.append(Finding(
                    f"unit.{unit}", PROBLEM, f"{unit} is {state}",
                    f"`journalctl -u {unit} -n 50` says why; then `systemctl restart "
                    f"{unit}` (or `hardway config reload`)"))
        r = _run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--state=failed",
                  "jupyter-*-singleuser.service"])
        failed = [ln.split()[0] for ln in (r.stdout if r else "").splitlines() if ln.split()]
        for unit in failed:
            out.append(Finding(
                f"unit.{unit}", PROBLEM, f"a user's server unit failed: {unit}",
                f"`journalctl -u {unit} -n 50` says why; `systemctl reset-failed {unit}` "
                "clears it (the user can start the server again from the hub)"))
        if r is not None and not failed:
            out.append(Finding("unit.singleuser", OK, "no user's server unit has failed"))
        # courses' formgraders (one unit per course)
        r = _run(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                  "hardway-course-*.service"])
        for line in (r.stdout if r else "").splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            unit, active, sub = parts[0], parts[2], parts[3]
            if active == "active":
                out.append(Finding(f"unit.{unit}", OK, f"{unit}: {active} ({sub})"))
            else:
                out.append(Finding(
                    f"unit.{unit}", PROBLEM, f"a course's formgrader is {active} ({sub}): "
                    f"{unit}", f"`journalctl -u {unit} -n 50` says why; then `systemctl "
                    f"restart {unit}` (or `hardway config reload`)"))
        return out

    # ports
    def ports(self) -> list[Finding]:
        s = self.settings
        wanted = {80: False, 443: False}
        if s is not None:
            wanted[s["http.port"]] = True
            if tls.source(s) != "off":
                wanted[s["https.port"]] = True
        listeners = []
        for name in ("tcp", "tcp6"):
            try:
                listeners += parse_listeners(Path(f"/proc/net/{name}").read_text())
            except OSError:
                pass
        listeners = [ln for ln in listeners if ln.port in wanted]
        owners = socket_owners({ln.inode for ln in listeners})
        traefik = str(self.paths.traefik_binary)
        # systemd (PID 1) holds the proxy's ports for it (its socket units): ours while
        # those units are up (another socket on the port would have kept them down)
        from hardway.apply import transaction as txn

        from .install import proxy_sockets

        sockets = proxy_sockets(txn.units_of(txn.read_json(self.paths.manifest)))
        r = _run(["systemctl", "show", "-P", "ActiveState", *sockets]) if sockets else None
        held = r is not None and r.returncode == 0 and set(r.stdout.split()) == {"active"}
        return port_findings(wanted, listeners, owners,
                             lambda p: p.exe == traefik or p.exe.startswith(traefik + " ")
                             or (held and p.pid == 1) or in_proxy_unit(p.pid))

    # routes
    def hub_api(self, path: str) -> Any:
        base = (self.settings["base_url"] if self.settings is not None else "/")
        token = self.paths.doctor_token.read_text().strip()
        url = f"http://127.0.0.1:{HUB_PORT}{base.rstrip('/')}/hub/api{path}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        with opener.open(req, timeout=NET_TIMEOUT) as r:
            return json.loads(r.read())

    def routes(self) -> list[Finding]:
        if not self.paths.doctor_token.is_file():
            return [Finding("routes", SKIPPED, "doctor has no hub token yet (installed "
                            "before `hardway doctor` existed)",
                            "`hardway config reload` registers it (the hub restarts once)")]
        import tomlkit

        try:
            text = self.paths.routes_file.read_text()
        except FileNotFoundError:
            text = ""
        routes = parse_routes(tomlkit.parse(text).unwrap())
        users: list[Any] = []
        limit = 200
        try:
            for page in range(50):
                batch = self.hub_api(f"/users?state=active&offset={page * limit}"
                                     f"&limit={limit}")
                users += batch
                if len(batch) < limit:
                    break
        except urllib.error.HTTPError as e:
            fix = ("`hardway config reload` (registers doctor's token with the hub)"
                   if e.code in (401, 403) else "`journalctl -u jupyterhub -n 50`")
            return [Finding("routes", PROBLEM, f"the hub's API refused doctor's request "
                            f"({e.code} {e.reason})", fix)]
        except (OSError, ValueError) as e:
            return [Finding("routes", PROBLEM, f"the hub's API does not answer on "
                            f"127.0.0.1:{HUB_PORT} ({getattr(e, 'reason', e)})",
                            "`systemctl status jupyterhub`; `journalctl -u jupyterhub -n 50`")]
        return compare_routes(routes, active_servers(users), local_answers)

    # certificates
    def certificate(self) -> list[Finding]:
        s = self.settings
        if s is None:
            return []
        mode = tls.source(s)
        if mode == "off":
            return [Finding("certificate", SKIPPED, "https is off: no certificate")]
        out = []
        if mode in ("files", "self-signed"):
            if mode == "files":
                cert, key = Path(s["https.tls.cert"]), Path(s["https.tls.key"])
                fix = ("put a current certificate and key in those files (or `hardway config "
                       "set https.tls.cert/https.tls.key` to new ones), then `hardway config "
                       "reload`")
            else:
                cert, key = self.paths.self_signed_cert, self.paths.self_signed_key
                fix = "`hardway config reload` makes a new self-signed certificate"
            try:
                pair = tls.load_pair(cert, key)
                out.append(self._expiry("certificate.files", f"{cert}", pair.not_after, fix))
            except HardwayError as e:
                out.append(Finding("certificate.files", PROBLEM, str(e), fix))
        else:
            fix = "see the ACME error below; then `hardway config reload`"
        port = s["https.port"]
        try:
            served = tls.served(port, tls.server_name(s), timeout=NET_TIMEOUT)
        except OSError as e:
            out.append(Finding("certificate.served", PROBLEM,
                               f"nothing answers TLS on 127.0.0.1:{port} ({e})",
                               "`systemctl restart jupyterhub-proxy`; `journalctl -u "
                               "jupyterhub-proxy -n 50`"))
            return out
        if mode == "acme" and served.placeholder:
            out.append(Finding("certificate.served", PROBLEM,
                               f"port {port} serves Traefik's placeholder: the ACME CA has "
                               "issued no certificate yet" + self._acme_error(),
                               "make each domain resolve to this machine and ports 80/443 "
                               "reachable from the CA; then `hardway config reload`"))
        else:
            names = ", ".join(served.names) or "?"
            out.append(self._expiry("certificate.served", f"the certificate served on port "
                                    f"{port} ({names}, by {served.issuer})", served.not_after,
                                    fix + (self._acme_error() if mode == "acme" else "")))
        return out

    @staticmethod
    def _expiry(fid: str, what: str, not_after: datetime.datetime, fix: str,
                now: datetime.datetime | None = None) -> Finding:
        return expiry_finding(fid, what, not_after, fix, now)

    def _acme_error(self) -> str:
        from .https import ACME_FAILURE

        r = _run(["journalctl", "--no-pager", "-o", "cat", "-n", "5000", "-u", PROXY_UNIT])
        errors = [ln.strip() for ln in (r.stdout if r else "").splitlines()
                  if ACME_FAILURE.search(ln)]
        return f"; the last ACME error: {errors[-1][:400]}" if errors else ""

    # DNS
    def dns(self) -> list[Finding]:
        s = self.settings
        if s is None:
            return []
        from urllib.parse import urlsplit

        names = list(s["https.letsencrypt.domains"])
        host = urlsplit(s["public_url"] or "").hostname
        if host:
            names.append(host)
        names = [n for n in dict.fromkeys(names) if n != "localhost" and not _is_ip(n)]
        if not names:
            return [Finding("dns", SKIPPED, "no domain configured (https.letsencrypt.domains, "
                                            "public_url)")]
        local = local_addresses()
        acme = tls.source(s) == "acme"
        return [dns_finding(n, resolve(n), local, acme) for n in names]

    # disk
    def disk(self) -> list[Finding]:
        p = self.paths
        return disk_findings(statvfs_spaces([p.root, p.state, p.home, p.prefix]))

    # clock
    def clock(self) -> list[Finding]:
        r = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        fix = ("enable time synchronisation: `apt-get install systemd-timesyncd` (or chrony), "
               "then `timedatectl set-ntp true`; LTI refuses launches more than 30 s off and "
               "certificates look invalid to a skewed clock")
        if r is None or r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["?"])[-1] if r else "did not answer"
            return [Finding("clock", WARNING, f"cannot tell whether the clock is synchronized "
                            f"(timedatectl: {why})", fix)]
        if r.stdout.strip() == "yes":
            return [Finding("clock", OK, "the clock is synchronized (NTP)")]
        return [Finding("clock", WARNING, "the clock is not synchronized (timedatectl: "
                        "NTPSynchronized=no): its skew cannot be measured without the "
                        "network, which doctor does not use", fix)]

    # environments
    def environments(self) -> list[Finding]:
        from hardway.apply.pyenv import pins_file

        out = []
        for label, venv, pins in (("hub", self.paths.hub_venv, "hub"),
                                  ("user", self.paths.user_venv, "user")):
            fid = f"environment.{label}"
            python = venv / "bin" / "python"
            if not python.exists():
                out.append(Finding(fid, PROBLEM, f"the {label} environment {venv} has no "
                                   "python", "run bootstrap.py again (it rebuilds it)"))
                continue
            fix = (f"`rm {venv}/.hardway-stamp.json && hardway config reload` puts the "
                   "pinned versions back")
            problems = []
            uv = _uv()
            r = _run([uv, "pip", "check", "--offline", "--python", str(python)]) if uv else None
            if r is not None and r.returncode != 0:
                lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()
                         if ln.strip().startswith(("The package", "error", "warning:"))
                         or "requires" in ln]
                problems.append("broken requirements: " + "; ".join(lines[:5] or ["?"]))
            try:
                wrong = pin_mismatches(installed_versions(venv),
                                       parse_pins(pins_file(pins).read_text()))
            except OSError:
                wrong = []
            if wrong:
                problems.append(f"{len(wrong)} version(s) differ from hardway's pins: "
                                + ", ".join(wrong[:8]))
            if problems:
                out.append(Finding(fid, PROBLEM, f"{venv}: " + "; ".join(problems), fix))
            else:
                how = "requirements met, " if r is not None else ""
                out.append(Finding(fid, OK, f"{venv}: {how}versions match the pins"))
        return out

    # database
    def database(self) -> list[Finding]:
        from hardway.plugin import resolve_secret

        url = ""
        if self.settings is not None:
            try:
                url = resolve_secret(self.settings["hub.db_url"]) or ""
            except HardwayError:
                url = "?"
        if url and not url.startswith("sqlite"):
            return [Finding("database", SKIPPED, f"the hub database is not SQLite "
                            f"({url.split(':', 1)[0]}): its size is the database server's "
                            "to report")]
        path = Path(url.split("sqlite:///", 1)[1]) if url.startswith("sqlite:///") else \
            self.paths.hub_db
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return [Finding("database", PROBLEM, f"{path} does not exist",
                            "`systemctl restart jupyterhub` creates it; restore a backup "
                            "if users are missing")]
        if size > DB_WARN_BYTES:
            return [Finding("database", WARNING, f"{path} is {_size(size)} (over "
                            f"{_size(DB_WARN_BYTES)}): a big SQLite file slows the hub",
                            "expired tokens and old OAuth clients are most of it; consider "
                            "PostgreSQL (hub.db_url)")]
        return [Finding("database", OK, f"{path}: {_size(size)}")]

    # what the selected authenticator, spawner and proxy run (Choice.health)
    def choices(self) -> list[Finding]:
        if self.settings is None or self.registry is None:
            return []
        from hardway.apply.system import System
        from hardway.plugin import Context

        ctx = Context(self.paths, system=System())
        out = []
        for choice in self.registry.selected(self.settings).values():
            for h in self.registry.call(choice, "health", self.settings, ctx):
                status = h.status if h.status in (OK, PROBLEM, WARNING) else WARNING
                out.append(Finding(f"{choice.kind}.{choice.name}.{h.id}", status, h.what,
                                   h.fix))
        return out


def expiry_finding(fid: str, what: str, not_after: datetime.datetime, fix: str,
                   now: datetime.datetime | None = None) -> Finding:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    left = not_after - now
    if left <= datetime.timedelta(0):
        return Finding(fid, PROBLEM, f"{what} expired on {not_after:%Y-%m-%d %H:%M} UTC", fix)
    if left < datetime.timedelta(days=CERT_MIN_DAYS):
        return Finding(fid, PROBLEM, f"{what} expires on {not_after:%Y-%m-%d %H:%M} UTC, in "
                       f"{left.days} day(s) (under {CERT_MIN_DAYS})", fix)
    return Finding(fid, OK, f"{what}: valid until {not_after:%Y-%m-%d} ({left.days} days)")


def _uv() -> str | None:
    try:
        from .install import uv_path

        return uv_path()
    except HardwayError:
        return None


def local_answers(target: str) -> bool:
    """Whether something accepts a TCP connection at a route's target (only loopback
    targets are tried: doctor sends nothing off the machine; others count as answering)."""
    from urllib.parse import urlsplit

    u = urlsplit(target)
    host = u.hostname or ""
    if host not in ("127.0.0.1", "::1", "localhost") or u.port is None:
        return True
    try:
        with socket.create_connection((host, u.port), timeout=NET_TIMEOUT):
            return True
    except OSError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def resolve(name: str) -> list[str] | str:
    """The addresses ``name`` resolves to, or why it does not (5 s at most)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, name, None, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=NET_TIMEOUT)
    except concurrent.futures.TimeoutError:
        return f"no answer from the resolver in {NET_TIMEOUT:.0f} s"
    except OSError as e:
        return str(e.strerror or e)
    finally:
        pool.shutdown(wait=False)
    return sorted({str(ipaddress.ip_address(i[4][0].split("%", 1)[0])) for i in infos})


def parse_local_addresses(fib_trie: str, if_inet6: str) -> set[str]:
    """This machine's addresses: IPv4 from /proc/net/fib_trie (the ``/32 host LOCAL``
    entries), IPv6 from /proc/net/if_inet6."""
    out = set()
    last = None
    for line in fib_trie.splitlines():
        m = re.search(r"\|--\s+(\S+)", line)
        if m:
            last = m.group(1)
        elif "/32 host LOCAL" in line and last:
            out.add(last)
    for line in if_inet6.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            out.add(str(ipaddress.ip_address(bytes.fromhex(fields[0]))))
    return out


def local_addresses() -> set[str]:
    texts = []
    for name in ("fib_trie", "if_inet6"):
        try:
            texts.append(Path(f"/proc/net/{name}").read_text())
        except OSError:
            texts.append("")
    return parse_local_addresses(*texts)


def dns_finding(name: str, resolved: list[str] | str, local: set[str],
                acme: bool) -> Finding:
    fid = f"dns.{name}"
    fix = (f"point {name}'s A/AAAA records at this machine's public address (at your DNS "
           "provider)")
    if isinstance(resolved, str):
        return Finding(fid, PROBLEM, f"{name} does not resolve ({resolved})", fix)
    here = [a for a in resolved if a in local]
    if here:
        return Finding(fid, OK, f"{name} -> {', '.join(resolved)} (this machine)")
    public_here = any(ipaddress.ip_address(a).is_global for a in local)
    what = f"{name} -> {', '.join(resolved)}, none of them an address of this machine"
    if public_here or not acme:
        # this machine has a public address of its own and the name points elsewhere
        return Finding(fid, PROBLEM if public_here else WARNING, what + (
            "" if public_here else " (fine if a NAT or load balancer forwards them here)"),
            fix)
    return Finding(fid, WARNING, what + " (this machine has no public address of its own: "
                   "fine if a NAT forwards ports 80 and 443 from it here)", fix)


def diagnose(paths: Paths) -> list[Finding]:
    """Every check, in order. Needs root (other users' processes, root-only files)."""
    from hardway.plugin.manager import Registry, load_settings, make_manager

    registry = Registry(make_manager())
    try:
        settings = load_settings(paths, registry)
        error = ""
    except HardwayError as e:
        settings, error = None, str(e)
    return Doctor(paths, settings, error, registry).run()
