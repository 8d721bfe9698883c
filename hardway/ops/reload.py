"""`hardway config reload`: render, validate, write only differences, restart only what
changed, and roll back to the previous files when a service does not come back."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from hardway import tls
from hardway.apply import transaction as txn
from hardway.apply.files import apply_files, locked, write_atomic
from hardway.apply.system import System
from hardway.errors import ConfigError, HardwayError, ServiceFailed
from hardway.paths import Paths
from hardway.plugin.contract import Context, File
from hardway.plugin.manager import Registry, load_settings, make_manager
from hardway.settings import Settings

from .checks import check_rendered, check_traefik
from .https import acme_outcome
from .install import (
    HUB_UNIT,
    PROXY_UNIT,
    apt_step,
    collect,
    cycle_proxy_sockets,
    ensure_generated_secrets,
    hub_env,
    hub_env_fingerprint,
    post_install_step,
    proxy_sockets,
    public_secrets,
    read_state,
    remembered_wheelhouse,
    render_now,
    restart_plan,
    restart_verb,
    undo,
    user_env,
    uv_path,
    wait_for_hub,
)
from .upgrade import apt_packages

UNIT_OF = {"hub": HUB_UNIT, "proxy": PROXY_UNIT}


@dataclasses.dataclass
class Outcome:
    changed: list[tuple[File, str]]
    restarted: list[str]
    installed: list[str]


def reload(paths: Paths, system: System, force: set[str] | None = None,
           dry_run: bool = False, out: Callable[[str], None] = print,
           timeout: float = 120, acme_wait: float = 90) -> Outcome:
    force = force or set()
    with locked(paths.lock_file, "" if dry_run else "config reload", out, paths.lock_holder):
        pending = None if dry_run else txn.load_pending(paths.pending_change)
        if pending:
            out(f"hardway: {pending.describe()} was interrupted; this reload finishes it "
                "(or, if the services do not come back, puts its previous files back)")
        registry = Registry(make_manager())
        settings = load_settings(paths, registry)
        ctx = Context(paths, public_secrets(paths), system, pm=registry.pm,
                      memory_total=system.memory_total())
        if dry_run:
            files = render_now(settings, registry, ctx)
            changed = apply_files(files, system, dry_run=True)
            for f, why in changed:
                out(f"would change {f.path} ({why})")
            missing = [e.path.name for e in env_specs(paths, registry, settings)
                       if not e.is_current()]
            if missing:
                out(f"would install packages into: {', '.join(missing)} (the hub config is "
                    "checked once they are there)")
            else:
                check_rendered([f for f, _ in changed], paths)
            state = read_state(paths)
            code = {HUB_UNIT: str(state.get("hub_env") or hub_env_fingerprint())}
            plan = txn.plan(files, changed, paths.manifest, paths.running, code)
            for path in plan.removed:
                out(f"would remove {path} (hardway no longer renders it)")
            _, restart = restart_plan(changed)
            # and what runs other files than those on disk (an interrupted change)
            restart |= txn.to_restart(plan, code) | {UNIT_OF[c] for c in force}
            out("would restart: " + (", ".join(sorted(restart)) or "nothing"))
            return Outcome(changed, sorted(restart), [])
        # the doctor's and the plugins' hub tokens
        for line in ensure_generated_secrets(registry, settings, paths):
            out(line)
        # the whole rendered set is checked before any side effect (packages, users,
        # files); when packages are missing, the hub config (which imports the chosen
        # classes) is checked again once they are there. The running hub does not load
        # new packages until it restarts.
        first = render_now(settings, registry, ctx)
        first_changed = apply_files(first, system, dry_run=True)
        preview = [f for f, _ in first_changed]
        checked = all(e.is_current() for e in env_specs(paths, registry, settings))
        if checked:
            check_rendered(preview, paths)
        else:
            check_traefik(preview)
        # the Debian packages a newly chosen plugin needs (docker.io, git for courses'
        # nbgitpuller), as install does; those already there cost one dpkg query
        installed = apt_step(system, collect(registry, settings, "apt")
                             + apt_packages(settings))
        installed += environments(paths, system, registry, settings)
        old_state = read_state(paths)
        ctx.state.update(old_state)
        installed += [c for choice in registry.selected(settings).values()
                      for c in registry.call(choice, "install", settings, ctx)]
        # the environments are in place already (built above, not in the background as
        # at install): what is made from the users' one comes before the files change
        installed += [c for choice in registry.selected(settings).values()
                      for c in registry.call(choice, "user_environment_ready", settings, ctx)]
        for line in installed:
            out(line)
        if installed or ctx.restart:  # what was installed may change what renders
            files = render_now(settings, registry, ctx)
            changed = apply_files(files, system, dry_run=True)
        else:
            files, changed = first, first_changed
        if installed or not checked:  # unchanged files were checked before
            try:
                check_rendered([f for f, _ in changed], paths)
            except ConfigError as e:
                if installed:
                    raise ConfigError(f"{e}\n(packages were installed before this check: "
                                      f"{'; '.join(installed)}; no file was changed)") from None
                raise
        code_before = {HUB_UNIT: str(old_state.get("hub_env") or hub_env_fingerprint())}
        plan = txn.plan(files, changed, paths.manifest, paths.running, code_before)
        for f, why in changed:
            out(f"changing {f.path} ({why})")
        for path in plan.removed:
            out(f"removing {path} (hardway no longer renders it)")
        record = txn.begin(paths.pending_change, "config reload", plan.touched(), pending)
        restart: set[str] = set()
        try:
            if PROXY_UNIT in restart_plan(changed)[1] and system.unit_state(
                    PROXY_UNIT).get("ActiveState") == "active":
                # Traefik restarts for this: stop it before its files change, so the
                # stopping process never reads the new dynamic file (it would start ACME
                # orders for names only the new one has, cut off mid-validation). The
                # gate holds its ports meanwhile: visitors wait, nothing is refused
                restart.add(PROXY_UNIT)
                system.systemctl("stop", PROXY_UNIT)
            for unit in plan.dropped_units:
                system.systemctl("disable", "--now", unit, check=False)
            txn.commit([f for f, _ in changed], plan.removed,
                       {f.path: system.ids(f.owner, f.group) for f, _ in changed})
            # what install does between writing files and starting services, at every
            # reload too (accounts and directories a newly enabled plugin needs)
            for line in post_install_step(registry, settings, ctx):
                out(line)
            code = {HUB_UNIT: hub_env_fingerprint()}
            # what differs from what runs, what was asked for, and what a choice's
            # install() asked for
            restart = txn.to_restart(plan, code) | {UNIT_OF[c] for c in force} | ctx.restart
            restarted = restart_units(system, plan.unit_files_changed() or bool(
                plan.dropped_units), restart, settings, timeout, plan.owned)
            txn.write_json(paths.manifest, plan.owned)
            txn.record_running(paths.running, plan.owned, code)
            ctx.state["hub_env"] = code[HUB_UNIT]
            if ctx.state != old_state:
                write_atomic(paths.install_state, (json.dumps(
                    ctx.state, indent=2, sort_keys=True) + "\n").encode(), 0o644)
            txn.clear(paths.pending_change)
        except BaseException as e:
            back = undo(paths, system, record, restart, settings, timeout)
            if isinstance(e, ServiceFailed):
                raise ServiceFailed(
                    f"{e}\nhardway put the previous files back and restarted "
                    f"{', '.join(sorted(restart))} with them: {back}. Your change is still in "
                    f"{paths.config_file}: fix or unset it, then reload again.") from None
            if isinstance(e, HardwayError):
                raise HardwayError(f"{e} {back}") from None
            out(f"hardway: interrupted: {back}")
            raise
        if pending:
            out(f"hardway: finished the interrupted {pending.describe()}: the services "
                "run the files the settings give.")
        if not changed and not plan.removed and not restarted:
            out("hardway: nothing changed; nothing restarted.")
        else:
            out("restarted: " + (", ".join(restarted) or "nothing (no restart needed)"))
        if PROXY_UNIT in restarted and tls.source(settings) == "acme":
            for line in acme_outcome(system, settings, acme_wait):
                out(line)
        return Outcome(changed, restarted, installed)


def env_specs(paths: Paths, registry: Registry, settings: Settings) -> list[Any]:
    return [hub_env(paths, registry, settings), user_env(paths, registry, settings)]


def environments(paths: Paths, system: System, registry: Registry,
                 settings: Settings) -> list[str]:
    lines = []
    for label, env in zip(("hub environment", "user environment"),
                          env_specs(paths, registry, settings), strict=True):
        if not env.is_current():
            lines += [f"{label}: {c}" for c in env.ensure(system, uv_path(),
                                                           remembered_wheelhouse(paths))]
    return lines


def restart_units(system: System, reload_units: bool, restart: set[str], settings: Settings,
                  timeout: float, owned: dict[str, str] | None = None) -> list[str]:
    """``owned``: the rendered files' components (the proxy's sockets among them)."""
    if reload_units:
        system.systemctl("daemon-reload")
    done = []
    # the proxy's ports: (re)started with the proxy stopped, only when one changed or is
    # down (a restore stopped them); else the proxy restarts alone on its sockets
    sockets = proxy_sockets(txn.units_of(owned or {}))
    cycled = cycle_proxy_sockets(system, sockets, restart) if (
        {PROXY_UNIT, *sockets} & restart) else []
    if cycled:
        done += [*cycled, PROXY_UNIT]
        restart = restart - {*sockets, PROXY_UNIT}
    # helpers first, then the proxy: the hub needs the proxy up
    helpers = sorted(restart - {PROXY_UNIT, HUB_UNIT})
    for unit in (*helpers, PROXY_UNIT, HUB_UNIT):
        if unit in restart:
            if unit in helpers and system.unit_state(unit).get("UnitFileState") != "enabled":
                system.systemctl("enable", unit)  # new with this reload (a new spawner)
            system.systemctl(restart_verb(unit), unit)
            done.append(unit)
    if {PROXY_UNIT, HUB_UNIT} & set(done):
        wait_for_hub(system, settings, timeout)
    return done

