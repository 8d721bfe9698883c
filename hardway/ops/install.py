"""`hardway install`: idempotent steps that act only on a difference and say what changed.

bootstrap.py hands over to this once the hub environment exists. Running it again with
the same flags changes nothing and says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bcrypt

from hardway import versions
from hardway.apply import pyenv
from hardway.apply import transaction as txn
from hardway.apply.files import apply_files, ensure_dir, lock_down, locked, write_atomic
from hardway.apply.system import System
from hardway.errors import ConfigError, HardwayError, ServiceFailed
from hardway.ops import upgrade
from hardway.paths import Paths
from hardway.plugin.contract import Context, File, check_url, hub_url
from hardway.plugin.manager import (
    ENTRY_POINT_GROUP,
    Registry,
    call_hook,
    load_settings,
    make_manager,
    results,
)
from hardway.render import render_all
from hardway.settings import Settings
from hardway.settings.configfile import ConfigDoc

log = logging.getLogger("hardway")

HUB_UNIT = "jupyterhub.service"
PROXY_UNIT = "jupyterhub-proxy.service"


@dataclasses.dataclass
class Options:
    admins: dict[str, str | None]
    #: install Python packages only from this directory; remembered for later runs
    wheelhouse: Path | None = None
    #: forget a remembered wheelhouse
    online: bool = False
    #: set versions.jupyterhub (bootstrap.py --jupyterhub built the environment with it)
    jupyterhub: str | None = None
    traefik_binary: Path | None = None
    wait_timeout: float = 180.0


class Reporter:
    """Numbered steps with elapsed seconds on the terminal; everything in the log."""

    def __init__(self, total: int, out: Callable[[str], None] = print):
        self.total = total
        self.n = 0
        self.out = out
        self.start = time.monotonic()
        self.changed: list[str] = []

    def step(self, title: str, fn: Callable[[], list[str]]) -> list[str]:
        self.n += 1
        t0 = time.monotonic()
        self.out(f"[{self.n}/{self.total}] {title} ...")
        log.info("step %d/%d: %s", self.n, self.total, title)
        changes = fn() or []
        took = time.monotonic() - t0
        for c in changes:
            self.out(f"      {c}")
            log.info("  changed: %s", c)
        self.out(f"      {'done' if changes else 'unchanged'} ({took:.1f} s, "
                 f"{time.monotonic() - self.start:.1f} s in all)")
        self.changed.extend(changes)
        return changes


def read_secret(path: Path) -> str:
    return path.read_text().strip()


def ensure_secret(path: Path, make: Callable[[], str]) -> list[str]:
    if path.is_file() and path.read_text().strip():
        if (path.stat().st_mode & 0o077) != 0:
            os.chmod(path, 0o600)
            return [f"made {path} root-only"]
        return []
    write_atomic(path, (make() + "\n").encode(), 0o600, 0, 0)
    return [f"generated {path}"]


#: Traefik checks the API password on *every* API request, and the hub makes two per
#: route it adds. At bcrypt's default cost (12) each check took ~0.3 s of CPU here, which
#: alone made a route take ~1 s to confirm and starved 20 simultaneous spawns. The
#: password is 32 random bytes and the API listens on loopback only: a slow hash buys
#: no safety there, so the cheapest bcrypt cost is used.
API_HASH_ROUNDS = 4
API_HASH_PREFIX = b"$2b$04$"


def secrets_step(paths: Paths) -> list[str]:
    changes = ensure_dir(paths.secrets, 0o700)
    changes += ensure_secret(paths.secrets / "jupyterhub_cookie_secret",
                             lambda: secrets.token_hex(32))
    pw_file = paths.secrets / "proxy_api_password"
    hash_file = paths.secrets / "proxy_api_password.bcrypt"
    changes += ensure_secret(pw_file, lambda: secrets.token_urlsafe(32))
    changes += ensure_secret(paths.doctor_token, lambda: secrets.token_hex(32))
    password = read_secret(pw_file).encode()
    current = hash_file.read_bytes().strip() if hash_file.is_file() else b""
    if not current.startswith(API_HASH_PREFIX) or not bcrypt.checkpw(password, current):
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(API_HASH_ROUNDS)).decode()
        write_atomic(hash_file, (hashed + "\n").encode(), 0o600, 0, 0)
        changes.append(f"hashed the proxy API password into {hash_file}")
    return changes


def secret_files(value: Any) -> list[Path]:
    """The files ``file:/PATH`` values name, anywhere in a setting's value."""
    if isinstance(value, str) and value.startswith("file:/"):
        return [Path(value[len("file:"):])]
    if isinstance(value, dict):
        return [p for v in value.values() for p in secret_files(v)]
    if isinstance(value, list):
        return [p for v in value for p in secret_files(v)]
    return []


def read_inputs(registry: Registry, settings: Settings,
                paths: Paths) -> dict[Path, bytes | None]:
    """What rendering may look at, read now (render itself opens no file): the files the
    chosen choices name in ``inputs()`` and the file of every ``file:`` value."""
    wanted: list[Path] = []
    for choice in registry.selected(settings).values():
        wanted += registry.call(choice, "inputs", settings, paths)
    for key in settings.decl:
        wanted += secret_files(settings[key.name])
    wanted += generated_secrets(registry, settings, paths)
    out: dict[Path, bytes | None] = {}
    for path in wanted:
        try:
            out[path] = path.read_bytes()
        except FileNotFoundError:
            out[path] = None
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    return out


def generated_secrets(registry: Registry, settings: Settings, paths: Paths) -> list[Path]:
    """The token files rendering needs: the core hub config's doctor service, then the
    plugins' (hardway_generated_secrets), checked to be secrets."""
    out: list[Path] = [paths.doctor_token]
    for plugin, found in call_hook(registry.pm, "hardway_generated_secrets",
                                   settings=settings, paths=paths):
        for path in found:
            if not path.is_relative_to(paths.secrets):
                raise ConfigError(f"plugin {plugin!r} (hook hardway_generated_secrets) named "
                                  f"{path}, which is not under {paths.secrets}")
            out.append(path)
    return out


def ensure_generated_secrets(registry: Registry, settings: Settings,
                             paths: Paths) -> list[str]:
    """Generate the missing token files (before rendering reads them): a hub installed
    before `hardway doctor` existed gets the doctor's here, and restarts once to learn it."""
    changes = ensure_dir(paths.secrets, 0o700)
    for path in generated_secrets(registry, settings, paths):
        changes += ensure_secret(path, private_key_pem if path.suffix == ".pem"
                                 else lambda: secrets.token_hex(32))
    return changes


def private_key_pem() -> str:
    """A new RSA key (2048 bits, PKCS#8 PEM): a ``.pem`` generated secret, such as the
    LTI 1.3 tool's signing key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode().strip()


def render_now(settings: Settings, registry: Registry, ctx: Context) -> list[File]:
    """Read what rendering needs, then render with no means to act on the machine."""
    ctx.inputs = read_inputs(registry, settings, ctx.paths)
    return render_all(settings, registry, dataclasses.replace(ctx, system=None))


def public_secrets(paths: Paths) -> dict[str, str]:
    """The derived values rendering needs (never a password itself)."""
    return {"proxy_api_hash": read_secret(paths.secrets / "proxy_api_password.bcrypt")}


def directories_step(paths: Paths) -> list[str]:
    changes = []
    changes += ensure_dir(paths.etc, 0o700)
    changes += ensure_dir(paths.config_d, 0o700)
    # others may pass through to the proxy's files, never list or read the rest
    changes += ensure_dir(paths.state, 0o711)
    changes += ensure_dir(paths.hub_dir, 0o700)
    changes += ensure_dir(paths.log_dir, 0o700)
    return changes


def settings_step(paths: Paths, admins: dict[str, str | None],
                  jupyterhub: str | None = None) -> list[str]:
    """Create config.yaml if missing; add --admin names to users.admin; set
    versions.jupyterhub from --jupyterhub."""
    with locked(paths.lock_file):
        doc = ConfigDoc(paths.config_file)
        current = list(doc.get("users.admin") or [])
        missing = [a for a in admins if a not in current]
        if missing:
            doc.set("users.admin", current + missing)
        if jupyterhub is not None and doc.get("versions.jupyterhub") != jupyterhub:
            doc.set("versions.jupyterhub", jupyterhub)
        text = doc.dumps()
        if paths.config_file.is_file() and text == doc.original:
            if paths.config_file.stat().st_mode & 0o077:
                os.chmod(paths.config_file, 0o600)
                return [f"made {paths.config_file} root-only"]
            return []
        write_atomic(paths.config_file, text.encode(), 0o600, 0, 0)
        changes = [f"wrote {paths.config_file}"]
        if missing:
            changes.append(f"admins added: {', '.join(missing)}")
        return changes


#: bump when lock_down's rules change, so existing installs are walked once more
LOCKDOWN_VERSION = 1


def permissions_step(paths: Paths, state: dict[str, object], envs_changed: bool) -> list[str]:
    """Nothing hardway keeps for root may be writable by users (environments, caches,
    lock files, state): walked after any environment changed, and once per install that
    predates these rules."""
    changes = ensure_dir(paths.cache, 0o700)
    if envs_changed or state.get("locked_down") != LOCKDOWN_VERSION:
        for tree in (paths.prefix, paths.cache):
            changes += lock_down(tree)
        for tree in (paths.state, paths.etc):  # hardway's own lock file lives here: kept
            changes += lock_down(tree, drop=())
        state["locked_down"] = LOCKDOWN_VERSION
    return changes


def apt_step(system: System, packages: list[str]) -> list[str]:
    if not packages:
        return []
    proc = system.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
                      check=False)
    installed = {line.split()[0] for line in (proc.stdout or "").splitlines()
                 if line.endswith(" installed")}
    missing = [p for p in packages if p not in installed]
    if not missing:
        return []
    env = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
               *missing]
    if apt_lists_age(APT_LISTS) < APT_FRESH:
        # lists fetched within the day (`apt update && curl ... | sudo python3 -`, a new
        # image): install from them, and only refresh them if that fails
        if system.run(install, env=env, timeout=1800, check=False).returncode == 0:
            return [f"apt installed {', '.join(missing)}"]
    system.run(["apt-get", "update", "-q"], env=env, timeout=600)
    system.run(install, env=env, timeout=1800)
    return [f"apt installed {', '.join(missing)}"]


APT_LISTS = Path("/var/lib/apt/lists")
APT_FRESH = 24 * 3600.0


def apt_lists_age(lists: Path) -> float:
    """Seconds since apt's package lists were last fetched (infinite: never)."""
    newest = max((p.stat().st_mtime for p in lists.glob("*Release")), default=None)
    return float("inf") if newest is None else max(0.0, time.time() - newest)


def uv_path() -> str:
    import shutil
    import sys

    candidate = Path(sys.executable).parent / "uv"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("uv")
    if found is None:
        raise HardwayError("uv is not installed in the hub environment; run bootstrap.py again")
    return found


def hub_version() -> str:
    from importlib.metadata import version

    return version("jupyterhub")


def collect(registry: Registry, settings: Settings, what: str) -> list[str]:
    """Merged package lists from the chosen plugins and every plugin's hook."""
    items: list[str] = []
    for choice in registry.selected(settings).values():
        items.extend(registry.call(choice, f"{what}_packages", settings))
    for result in results(registry.pm, f"hardway_{what}_packages", settings=settings):
        items.extend(result)
    return sorted(dict.fromkeys(items))


def post_install_step(registry: Registry, settings: Settings, ctx: Context) -> list[str]:
    """The chosen plugins' post_install, then every plugin's hardway_post_install hook."""
    changes = [c for choice in registry.selected(settings).values()
               for c in registry.call(choice, "post_install", settings, ctx)]
    call_hook(registry.pm, "hardway_post_install", settings=settings, ctx=ctx)
    return changes


def hub_env_fingerprint() -> str:
    """Changes whenever a package in the hub environment changes, hardway's code included
    (its RECORD lists a hash of every file): the hub must then restart to load it."""
    import hashlib
    from importlib import metadata

    h = hashlib.sha256()
    for dist in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        h.update(f"{dist.metadata['Name']}=={dist.version}\n".encode())
        if (dist.metadata["Name"] or "").lower() == "hardway":
            h.update((dist.read_text("RECORD") or "").encode())
    return h.hexdigest()


def user_env(paths: Paths, registry: Registry, settings: Settings) -> pyenv.Env:
    """Each version is built beside the one in use and switched to when complete: running
    servers keep the environment they started with (their scripts name its directory)."""
    reqs = ["jupyterlab", "notebook", "ipykernel", f"jupyterhub=={hub_version()}",
            *settings["user_environment.packages"], *collect(registry, settings, "user")]
    return pyenv.Env(paths.user_venv, sorted(dict.fromkeys(reqs)), pyenv.pins_file("user"),
                     compile_bytecode=True, excludes=pyenv.pins_file("user-excludes"),
                     beside=paths.envs, overrides=versions.overrides(
                         hub_version(), settings["versions.jupyterlab"]))


def own_env(paths: Paths) -> Path:
    """The hub environment this hardway runs from: a fresh build bootstrap.py made beside
    the running one (switched to by `install` once it works), or the current one."""
    import sys

    mine = Path(sys.prefix)
    return mine if mine.parent == paths.envs else paths.hub_venv


def hub_env(paths: Paths, registry: Registry, settings: Settings) -> pyenv.Env:
    """The plugins' hub packages go into this hardway's own environment, in place: they
    are only added (at pinned versions), and the running hub loads them at its restart."""
    return pyenv.Env(own_env(paths), collect(registry, settings, "hub"),
                     pyenv.pins_file("hub"), compile_bytecode=True, rebuild=False,
                     overrides=versions.overrides(hub_version()),
                     # the sync keeps hardway (and what it needs), the tools bootstrap.py
                     # put there, and plugins installed with bootstrap.py --plugin
                     keep=("hardway", "uv", "pip", "setuptools"),
                     keep_groups=(ENTRY_POINT_GROUP,))


def switch_hub_env(paths: Paths) -> tuple[list[str], Path | None]:
    """Point the hub environment's name at the one this hardway runs from, if it is not
    already; returns (what changed, what it named before: the way back)."""
    mine = own_env(paths)
    if mine == paths.hub_venv or pyenv.link_target(paths.hub_venv) == mine.resolve():
        return [], None
    previous = pyenv.switch_link(paths.hub_venv, mine)
    was = f" (was {previous.name})" if previous else ""
    return [f"{paths.hub_venv} -> {mine.name}{was}"], previous


def restart_plan(changed: list[tuple[File, str]], extra_hub: bool = False,
                 extra_proxy: bool = False) -> tuple[bool, set[str]]:
    """(daemon-reload needed, units to restart) for a set of changed files."""
    reload_units = any(txn.is_unit_file(f.path) for f, _ in changed)
    restart = set()
    for f, _ in changed:
        if f.component == "hub":
            restart.add(HUB_UNIT)
        elif f.component == "proxy":
            restart.add(PROXY_UNIT)
        elif f.component.endswith(txn.UNIT_SUFFIXES):
            restart.add(f.component)
    if extra_hub:
        restart.add(HUB_UNIT)
    if extra_proxy:
        restart.add(PROXY_UNIT)
    return reload_units, restart


def service_units(files: list[File]) -> list[str]:
    """Units of the hardway services the rendered files belong to, in start order: the
    helpers (confinement, ...) first, then the proxy, then the hub."""
    helpers = sorted({f.component for f in files
                      if f.component.endswith(txn.UNIT_SUFFIXES)})
    return [*helpers, PROXY_UNIT, HUB_UNIT]


def proxy_sockets(units: Iterable[str]) -> list[str]:
    """The proxy's listening sockets among ``units`` (systemd holds its public ports)."""
    return sorted({u for u in units if u.startswith("jupyterhub-proxy-")
                   and u.endswith(".socket")})


def cycle_proxy_sockets(system: System, sockets: list[str], restart: set[str],
                        check: bool = True) -> list[str]:
    """Bring up the proxy's sockets that are new, changed (in ``restart``) or down, with
    the proxy stopped meanwhile: systemd refuses to start a socket whose service runs,
    and the old proxy may still hold the port itself (before sockets, or a changed
    address). Returns the sockets it started (the proxy was restarted then); none when
    every socket is up and unchanged (the proxy restarts alone, its ports kept
    listening)."""
    stale = [u for u in sockets if u in restart
             or system.unit_state(u).get("ActiveState") != "active"]
    if not stale:
        return []
    system.systemctl("stop", PROXY_UNIT, check=check)
    for unit in stale:
        if system.unit_state(unit).get("UnitFileState") != "enabled":
            system.systemctl("enable", unit, check=check)
        system.systemctl("restart", unit, check=check)
    system.systemctl("start", PROXY_UNIT, check=check)
    return stale


def restart_verb(unit: str) -> str:
    """The proxy and the hub restart; a helper (a oneshot that loads rules) reloads."""
    return "restart" if unit in (PROXY_UNIT, HUB_UNIT) else "reload-or-restart"


def services_step(system: System, daemon_reload: bool, restart: set[str],
                  units: list[str] | None = None) -> list[str]:
    changes = []
    if daemon_reload:
        system.systemctl("daemon-reload")
    units = units or [PROXY_UNIT, HUB_UNIT]
    sockets = proxy_sockets(units)
    cycled = cycle_proxy_sockets(system, sockets, restart)
    if cycled:
        changes.append(f"started {', '.join(cycled)} and {PROXY_UNIT} on them")
        restart = restart - {PROXY_UNIT}  # just started
    for unit in units:
        if unit in sockets:
            continue
        state = system.unit_state(unit)
        if state.get("UnitFileState") != "enabled":
            system.systemctl("enable", unit)
            changes.append(f"enabled {unit}")
        if state.get("ActiveState") != "active":
            system.systemctl("start", unit)
            changes.append(f"started {unit}")
        elif unit in restart:
            system.systemctl(restart_verb(unit), unit)
            changes.append(f"restarted {unit}")
    return changes


def wait_for_hub(system: System, settings: Settings, timeout: float) -> float:
    """Wait until the hub answers through the proxy; on failure show the failing unit.

    A unit that fails, or that systemd restarts (Restart=always) while we wait, has
    failed: say so at once instead of waiting out the timeout.
    """
    url = check_url(settings) + "hub/api/"
    # the certificate may not be issued yet (ACME) or be self-signed: this checks that the
    # hub answers through the proxy, not who signed the certificate
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    t0 = time.monotonic()
    last = ""
    restarts = {u: system.unit_state(u).get("NRestarts") for u in (PROXY_UNIT, HUB_UNIT)}
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=5, context=insecure) as resp:
                if resp.status == 200 and b"version" in resp.read():
                    return time.monotonic() - t0
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        for unit in (PROXY_UNIT, HUB_UNIT):
            state = system.unit_state(unit)
            if state.get("ActiveState") == "failed" or state.get("NRestarts") != restarts[unit]:
                raise ServiceFailed(f"{unit} failed to start. Its last log lines:\n"
                                    + system.journal_tail(unit))
        time.sleep(0.5)
    raise ServiceFailed(
        f"the hub did not answer at {url} within {timeout:.0f} s (last: {last}).\n"
        f"Last log lines of {HUB_UNIT} and {PROXY_UNIT}:\n"
        + system.journal_tail(HUB_UNIT, PROXY_UNIT, lines=40))


def undo(paths: Paths, system: System, record: txn.Pending, restart: set[str],
         settings: Settings, timeout: float) -> str:
    """Put the recorded files back and restart what may have run the new ones; clear the
    record when that is done. Says where the hub stands."""
    restored = txn.restore(record)
    owned = txn.read_json(paths.manifest)
    units = set(restart)
    for line in restored:
        for name, component in owned.items():
            unit = txn.unit_of(component)
            if unit and name in line:
                units.add(unit)
    if any(txn.is_unit_file(Path(name)) for name in record.saved):
        system.systemctl("daemon-reload", check=False)
    sockets = proxy_sockets(txn.units_of(owned))
    if cycle_proxy_sockets(system, sockets, units, check=False):
        units -= {PROXY_UNIT, *sockets}
    for unit in (*sorted(units - {PROXY_UNIT, HUB_UNIT}), PROXY_UNIT, HUB_UNIT):
        if unit in units:
            system.systemctl(restart_verb(unit), unit, check=False)
    try:
        wait_for_hub(system, settings, timeout)
        back = "the hub answers again with the previous files"
    except ServiceFailed:
        back = "the hub still does not answer: see journalctl -u jupyterhub"
    if units:  # they run the restored files, and the code there is now
        txn.record_running(paths.running, owned, {HUB_UNIT: hub_env_fingerprint()},
                           only=units)
    txn.clear(paths.pending_change)
    return back


def cli_link_step(paths: Paths) -> list[str]:
    target = paths.hub_venv / "bin" / "hardway"
    link = paths.cli_link
    if link.is_symlink() and os.readlink(link) == str(target):
        return []
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(".hardway.new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    return [f"linked {link} -> {target}"]


def read_state(paths: Paths) -> dict[str, object]:
    try:
        return json.loads(paths.install_state.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def install(paths: Paths, system: System, options: Options,
            out: Callable[[str], None] = print) -> list[str]:
    """Run every step; returns the list of changes (empty: nothing to do)."""
    rep = Reporter(14, out)
    registry = Registry(make_manager())
    rep.step("directories", lambda: directories_step(paths))
    rep.step("settings", lambda: settings_step(paths, options.admins, options.jupyterhub))
    settings = load_settings(paths, registry)
    wheelhouse = options.wheelhouse or (None if options.online else remembered_wheelhouse(paths))
    if options.wheelhouse is None and wheelhouse is not None:
        out(f"      packages only from {wheelhouse} (remembered; --online forgets it)")
    # the users' environment (the longest step) builds while everything else is done:
    # nothing before the end needs it (a spawn does); it is waited for before the
    # permissions walk and before install says it finished
    users = user_env(paths, registry, settings)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="user-environment")
    user_build = pool.submit(timed, users.ensure, system, uv_path(), wheelhouse)
    try:
        rep.step("secrets", lambda: secrets_step(paths))
        rep.step("system packages", lambda: apt_step(
            system, collect(registry, settings, "apt") + upgrade.apt_packages(settings)))
        hub_changes = rep.step("hub environment", lambda: hub_env(
            paths, registry, settings).ensure(system, uv_path(), wheelhouse))
        return _install_rest(paths, system, options, out, rep, registry, settings,
                             hub_changes, user_build)
    except BaseException:
        pool.shutdown(wait=True)  # never leave uv working behind an error
        if users.previous is not None:  # the users' environment goes back with the hub
            pyenv.switch_link(paths.user_venv, users.previous)
            out(f"      {paths.user_venv} points to {users.previous.name} again")
        raise
    finally:
        pool.shutdown(wait=True)


def remembered_wheelhouse(paths: Paths) -> Path | None:
    """The --wheelhouse an earlier install was given: an offline site stays offline for
    every later install, reload and upgrade."""
    value = read_state(paths).get("wheelhouse")
    return Path(value) if isinstance(value, str) and value else None


def timed(fn: Callable[..., list[str]], *args: Any) -> tuple[list[str], float]:
    t0 = time.monotonic()
    return fn(*args), time.monotonic() - t0


def _install_rest(paths: Paths, system: System, options: Options, out: Callable[[str], None],
                  rep: Reporter, registry: Registry, settings: Settings,
                  hub_changes: list[str], user_build: Future[tuple[list[str], float]]
                  ) -> list[str]:
    ctx = Context(paths, public_secrets(paths), system,
                  admin_passwords={k: v for k, v in options.admins.items() if v},
                  pm=registry.pm, traefik_local=options.traefik_binary,
                  memory_total=system.memory_total())
    # another JupyterHub in the environment this hardway runs from: its database is
    # migrated in the services step (a downgrade is refused here, before any change)
    migration = upgrade.needs_migration(paths, own_env(paths))
    chosen = settings["versions.jupyterhub"]
    if chosen != hub_version():
        ctx.notes.append(f"versions.jupyterhub is {chosen} but the hub environment has "
                         f"JupyterHub {hub_version()}: `hardway upgrade` applies it")
    old_state = read_state(paths)
    ctx.state.update(old_state)
    ctx.state["hub_env"] = hub_env_fingerprint()
    if options.wheelhouse is not None:
        ctx.state["wheelhouse"] = str(options.wheelhouse.resolve())
    elif options.online:
        ctx.state.pop("wheelhouse", None)
    rep.step("proxy and spawner prerequisites", lambda: [
        c for choice in registry.selected(settings).values()
        for c in registry.call(choice, "install", settings, ctx)])
    files_changed: list[tuple[File, str]] = []
    units: list[str] = []
    pending = txn.load_pending(paths.pending_change)
    if pending:
        out(f"      {pending.describe()} was interrupted: this install finishes it")
    code_before = {HUB_UNIT: str(old_state.get("hub_env") or ctx.state["hub_env"])}
    plans: list[txn.Plan] = []
    records: list[txn.Pending] = []

    def files_step() -> list[str]:
        from hardway.ops.checks import check_rendered

        generated = ensure_generated_secrets(registry, settings, paths)
        files = render_now(settings, registry, ctx)
        units.extend(service_units(files))
        changed = apply_files(files, system, dry_run=True)
        check_rendered([f for f, _ in changed], paths)
        plan = txn.plan(files, changed, paths.manifest, paths.running, code_before)
        plans.append(plan)
        records.append(txn.begin(paths.pending_change, "install", plan.touched(), pending))
        for unit in plan.dropped_units:
            system.systemctl("disable", "--now", unit, check=False)
        txn.commit([f for f, _ in changed], plan.removed,
                   {f.path: system.ids(f.owner, f.group) for f, _ in changed})
        files_changed.extend(changed)
        return (generated + [f"wrote {f.path} ({why})" for f, why in changed]
                + [f"removed {p} (no longer rendered)" for p in plan.removed])

    rep.step("configuration files", files_step)
    rep.step("post-install", lambda: post_install_step(registry, settings, ctx))
    try:
        if ctx.state != old_state:
            write_atomic(paths.install_state,
                         (json.dumps(ctx.state, indent=2, sort_keys=True) + "\n").encode(), 0o644)
        hub_code_changed = old_state.get("hub_env") != ctx.state["hub_env"]
        if hub_code_changed and old_state:
            rep.changed.append("the hub environment changed: the hub restarts to load it")
        plan = plans[0]
        code = {HUB_UNIT: str(ctx.state["hub_env"])}
        restart = txn.to_restart(plan, code)
        if hub_changes:
            restart.add(HUB_UNIT)
        restart |= ctx.restart  # what a choice's install() asked for
        daemon_reload = plan.unit_files_changed() or bool(plan.dropped_units)

        def check() -> list[str]:
            took = wait_for_hub(system, settings, options.wait_timeout)
            out(f"      the hub answers through the proxy at {hub_url(settings)} "
                f"(waited {took:.1f} s)")
            txn.write_json(paths.manifest, plan.owned)
            txn.record_running(paths.running, plan.owned, code)
            txn.clear(paths.pending_change)
            return []

        hub_before: list[Path] = []

        def services() -> list[str]:
            # a hub environment bootstrap.py built beside the running one becomes the
            # hub's now, with the files rendered for it; the hub restarts into it
            lines: list[str] = []
            if migration is not None:
                restart.add(HUB_UNIT)  # stopped for the migration: a rollback starts it
                lines += upgrade.upgrade_database(paths, system, settings, own_env(paths),
                                                  *migration, out)
            switched, before = switch_hub_env(paths)
            if switched:
                restart.add(HUB_UNIT)
            if before is not None:
                hub_before.append(before)
            return lines + switched + services_step(system, daemon_reload, restart, units)

        try:
            rep.step("services", services)
            rep.step("check", check)
        except BaseException as e:
            if hub_before:  # back to the environment that ran before
                pyenv.switch_link(paths.hub_venv, hub_before[0])
            if not plan.previous:  # a first install: there is nothing to go back to
                raise
            back = undo(paths, system, records[0], restart, settings, options.wait_timeout)
            if isinstance(e, ServiceFailed):
                raise ServiceFailed(f"{e}\nhardway put the previous files back and restarted "
                                    f"the services with them: {back}.") from None
            out(f"hardway: interrupted: {back}")
            raise

        def user_environment() -> list[str]:
            changes, took = user_build.result()
            out(f"      built in the background ({took:.1f} s)")
            return changes

        user_changes = rep.step("user environment", user_environment)
        rep.step("made from the user environment", lambda: [
            c for choice in registry.selected(settings).values()
            for c in registry.call(choice, "user_environment_ready", settings, ctx)])
        written = dict(ctx.state)
        rep.step("permissions", lambda: permissions_step(
            paths, ctx.state, bool(hub_changes or user_changes)))
        if ctx.state != written:
            write_atomic(paths.install_state,
                         (json.dumps(ctx.state, indent=2, sort_keys=True) + "\n").encode(), 0o644)
        rep.step("command line", lambda: cli_link_step(paths))
        for note in ctx.notes:
            out(f"note: {note}")
            log.info("note: %s", note)
        if rep.changed:
            out(f"hardway: install finished in {time.monotonic() - rep.start:.1f} s; "
                f"{len(rep.changed)} change(s).")
        else:
            out(f"hardway: nothing to change; everything was already in place "
                f"({time.monotonic() - rep.start:.1f} s).")
        out(f"The hub: {hub_url(settings)}   settings: {paths.config_file}   "
            f"logs: journalctl -u jupyterhub -u jupyterhub-proxy")
    except BaseException:
        # a password generated above is stored already: show it even when a later step
        # fails, or the admin could never learn it
        for line in ctx.terminal_only:
            out(line)
        raise
    for line in ctx.terminal_only:  # never logged: shown once, here
        out(line)
    return rep.changed
