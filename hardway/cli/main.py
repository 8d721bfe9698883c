"""The `hardway` command. The only place that prints errors and exits."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from hardway import __version__
from hardway.errors import HardwayError, UsageError
from hardway.paths import Paths, default_paths

from . import require_root

log = logging.getLogger("hardway")
log.addHandler(logging.NullHandler())  # the terminal gets our own messages, never a duplicate
log.propagate = False


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UsageError (one line, exit 2), never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def setup_file_log(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def cmd_install(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.apply.system import System
    from hardway.ops.install import Options, install

    require_root()
    admins: dict[str, str | None] = {name: None for name in args.admin}
    if args.admin_passwords_stdin:
        try:
            given = json.loads(sys.stdin.read() or "{}")
        except ValueError:
            raise UsageError("--admin-passwords-stdin: expected a JSON object "
                             '{"name": "password"} on standard input') from None
        if not isinstance(given, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
            raise UsageError("--admin-passwords-stdin: expected a JSON object "
                             '{"name": "password"} on standard input')
        admins.update(given)
    from hardway.settings import keytypes

    for name in admins:
        try:
            keytypes.USERNAME.check(name)
        except keytypes.BadValue as e:
            raise UsageError(f"--admin {name!r}: {e}") from None
    if args.wheelhouse is not None and not args.wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {args.wheelhouse}: not a directory (expected a "
                         "directory of wheels, as `pip download` or `uv pip download` fill)")
    from hardway import versions

    if args.jupyterhub is not None and args.jupyterhub not in versions.JUPYTERHUB:
        raise UsageError(f"--jupyterhub {args.jupyterhub!r}: expected one of "
                         f"{', '.join(versions.JUPYTERHUB)} (the versions this hardway was "
                         "tested with)")
    if args.wheelhouse is not None and args.online:
        raise UsageError("--wheelhouse and --online: choose one (--online forgets a "
                         "remembered wheelhouse)")
    setup_file_log(paths.install_log)
    log.info("hardway %s install: admins %s", __version__, sorted(admins))
    from hardway.apply.files import locked

    # one writing command at a time, from the first step to the last restart
    with locked(paths.lock_file, "install", print, paths.lock_holder):
        install(paths, System(), Options(
            admins=admins, wheelhouse=args.wheelhouse, online=args.online,
            traefik_binary=args.traefik_binary, jupyterhub=args.jupyterhub,
            wait_timeout=args.timeout))
    return 0


def cmd_upgrade(args: argparse.Namespace, paths: Paths) -> int:
    """Build the hub environment for versions.jupyterhub beside the running one, then
    hand over to `hardway install` run from it (which backs up and migrates the database,
    switches, and rolls back on failure)."""
    from hardway.apply.files import locked
    from hardway.apply.system import System
    from hardway.ops import upgrade
    from hardway.ops.install import own_env, remembered_wheelhouse, uv_path
    from hardway.plugin.manager import Registry, load_settings, make_manager

    require_root()
    setup_file_log(paths.install_log)
    with locked(paths.lock_file, "upgrade", print, paths.lock_holder):
        settings = load_settings(paths, Registry(make_manager()))
        wanted = settings["versions.jupyterhub"]
        own = own_env(paths)
        have = upgrade.jupyterhub_version(own)
        upgrade.check_direction(have, wanted)
        target = own
        if have != wanted:
            print(f"hardway: JupyterHub {have} -> {wanted}: building its hub environment "
                  "beside the running one")
            target = upgrade.build_hub_env(paths, System(), own, wanted, uv_path(),
                                           remembered_wheelhouse(paths), print)
        else:
            print(f"hardway: JupyterHub {have} is the one in use (versions.jupyterhub)")
    # the lock is released here: install takes it again, from the new environment
    exe = str(target / "bin" / "hardway")
    sys.stdout.flush()
    os.execv(exe, [exe, "install", "--timeout", str(args.timeout)])


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.apply.system import System
    from hardway.ops.install import HUB_UNIT, PROXY_UNIT, read_state

    system = System()
    state = read_state(paths)
    for unit in (PROXY_UNIT, HUB_UNIT):
        s = system.unit_state(unit)
        print(f"{unit}: {s.get('ActiveState', '?')} ({s.get('SubState', '?')}), "
              f"{s.get('UnitFileState', '?')}")
    traefik = state.get("traefik")
    if isinstance(traefik, dict):
        print(f"traefik {traefik.get('version')}: from {traefik.get('source')}, "
              f"sha256 {traefik.get('sha256')}")
    print(f"settings: {paths.config_file}")
    try:
        from hardway.plugin.manager import Registry, load_settings, make_manager

        registry = Registry(make_manager())
        settings = load_settings(paths, registry)
    except HardwayError as e:
        print(f"settings are not valid: {e}")
        return 0
    from hardway.ops.https import report
    from hardway.plugin import Context

    for line in report(system, settings):
        print(line)
    ctx = Context(paths, system=system)
    for choice in registry.selected(settings).values():
        try:
            for h in registry.call(choice, "health", settings, ctx):
                print(h.what if h.status == "ok" else f"{h.what} [{h.status}]")
        except HardwayError as e:
            print(f"{choice.kind} {choice.name}: {e}")
    return 0


def cmd_lti(args: argparse.Namespace, paths: Paths) -> int:
    from hardway_plugins.auth.lti import lms_instructions

    from hardway.plugin.manager import Registry, load_settings, make_manager

    print(lms_instructions(load_settings(paths, Registry(make_manager()))), end="")
    return 0


def cmd_doctor(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.ops import doctor

    if os.geteuid() != 0:
        raise UsageError("doctor reads other users' processes, the proxy's files and root-only "
                         "secrets: run it as root (sudo hardway doctor)")
    findings = doctor.diagnose(paths)
    if args.json:
        sys.stdout.write(doctor.to_json(findings))
        return doctor.exit_code(findings)
    width = max(len(f.id) for f in findings)
    for f in findings:
        print(f"{f.status:<8} {f.id:<{width}}  {f.what}")
        if f.status in (doctor.PROBLEM, doctor.WARNING) and f.fix:
            print(f"{'':<8} {'':<{width}}  fix: {f.fix}")
    problems = sum(f.status == doctor.PROBLEM for f in findings)
    warnings = sum(f.status == doctor.WARNING for f in findings)
    print(f"hardway doctor: {problems} problem(s), {warnings} warning(s), "
          f"{len(findings)} check(s)")
    return doctor.exit_code(findings)


def cmd_backup(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.ops.backup import backup

    require_root()
    w = backup(paths, args.output, homes=args.homes)
    homes = f", homes of {w.accounts} account(s)" if args.homes else ""
    print(f"hardway: backup written to {w.path} ({w.entries} entries, "
          f"{w.size / 1e6:.1f} MB, hub database revision {w.revision or '-'}{homes}); "
          "root-only: it holds the hub's secrets")
    return 0


def cmd_restore(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.apply.system import System
    from hardway.ops.backup import restore

    require_root()
    restore(paths, System(), args.archive, timeout=args.timeout)
    print(f"hardway: restored {args.archive}; the hub answers")
    return 0


def cmd_uninstall(args: argparse.Namespace, paths: Paths) -> int:
    from hardway.apply.system import System
    from hardway.ops.uninstall import describe, plan, uninstall

    require_root()
    system = System()
    if not args.yes:
        for line in describe(plan(paths, system), paths, args.purge):
            print(line)
        raise UsageError("nothing was removed: run `hardway uninstall --yes"
                         + (" --purge" if args.purge else "") + "` to do this")
    uninstall(paths, system, args.purge)
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="hardway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hardway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("install", help="install or upgrade the hub (what bootstrap.py runs)")
    p.add_argument("--admin", action="append", default=[], metavar="NAME",
                   help="make NAME a hub admin (repeatable)")
    p.add_argument("--admin-passwords-stdin", action="store_true",
                   help='read {"name": "password"} JSON for admins from standard input')
    p.add_argument("--wheelhouse", type=Path, help="install Python packages only from DIR "
                   "(remembered: later installs and reloads use it too)")
    p.add_argument("--online", action="store_true",
                   help="forget a remembered --wheelhouse: use the package index again")
    p.add_argument("--traefik-binary", type=Path, help="use this Traefik binary")
    p.add_argument("--jupyterhub", metavar="VERSION", help="set versions.jupyterhub "
                   "(bootstrap.py --jupyterhub builds the hub environment with it)")
    p.add_argument("--timeout", type=float, default=180.0,
                   help="seconds to wait for the hub to answer (default 180)")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("upgrade", help="apply versions.jupyterhub: a new hub environment "
                       "beside the running one, the database backed up and migrated")
    p.add_argument("--timeout", type=float, default=180.0,
                   help="seconds to wait for the hub to answer (default 180)")
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("status", help="state of the services and where things come from")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("doctor", help="check the installation; each problem with its fix "
                       "(exit 1 when something is wrong)")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of findings (id, status, what, fix) for monitoring")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("lti", help="what the LMS admin must paste (auth.type lti11/lti13)")
    p.set_defaults(func=cmd_lti)

    p = sub.add_parser("backup", help="write the hub's state to one root-only archive")
    p.add_argument("--homes", action="store_true",
                   help="include hub users' home directories (owners kept by name)")
    p.add_argument("-o", "--output", type=Path, metavar="PATH",
                   help="archive file, or a directory for the default name "
                        "(default: /var/backups/hardway/hardway-HOST-STAMP.tar.gz)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="put a backup archive back (on a bootstrapped host)")
    p.add_argument("archive", type=Path, metavar="ARCHIVE")
    p.add_argument("--timeout", type=float, default=180.0,
                   help="seconds to wait for the hub to answer (default 180)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("uninstall", help="remove hardway (a final backup first; homes kept)")
    p.add_argument("--purge", action="store_true",
                   help="also remove hub users' unix accounts, their homes and the final "
                        "backup archive")
    p.add_argument("--yes", action="store_true",
                   help="do it (without --yes: print what would be removed, change nothing)")
    p.set_defaults(func=cmd_uninstall)

    from .config import add_config_parser
    from .course import add_course_parser

    add_config_parser(sub)
    add_course_parser(sub)
    return parser


def log_traceback(path: Path, argv: Sequence[str], exc: BaseException) -> None:
    """Append ``exc``'s traceback to ``path`` (directory 0700, file 0600, both root's)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as f:
        os.fchmod(fd, 0o600)
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        # the command only: values on the command line may be secrets (config set)
        command = " ".join(a for a in argv[:2] if not a.startswith("-"))
        f.write(f"--- {stamp} hardway {__version__}: hardway {command}\n")
        f.write("".join(traceback.format_exception(exc)))


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (the message's own lines joined)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def interrupted(signum: int, frame: object) -> None:
    """SIGTERM and SIGHUP (a closed SSH session) end a command like Ctrl-C does: through
    the code that puts back what a half-done change wrote."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def finish_interrupted(args: argparse.Namespace, paths: Paths) -> None:
    """Before any other command: finish (or undo) a change a killed command left.
    `install` and `config reload` do this themselves as part of their work."""
    if os.geteuid() != 0 or not paths.pending_change.exists():
        return
    if args.command in ("install", "doctor", "uninstall") or getattr(args, "verb", None) \
            == "reload":
        return  # doctor only looks (it reports it); uninstall removes what a change left
    from hardway.apply.system import System
    from hardway.ops.reload import reload

    reload(paths, System())


def main(argv: Sequence[str] | None = None) -> int:
    paths = default_paths()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, interrupted)
        finish_interrupted(args, paths)
        return int(args.func(args, paths) or 0)
    except HardwayError as e:
        print(f"hardway: error: {e}", file=sys.stderr)
        log.error("%s", e)
        return e.exit_code
    except KeyboardInterrupt:
        print("hardway: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # a bug or a state hardway did not foresee: one line for the person, the
        # traceback for whoever fixes it
        log.exception("unexpected error")
        try:
            log_traceback(paths.cli_log, argv, e)
            where = f"the traceback is in {paths.cli_log}"
        except (OSError, ValueError) as log_error:
            why = getattr(log_error, "strerror", None) or log_error
            where = f"the traceback could not be written to {paths.cli_log} ({why})"
        print(f"hardway: unexpected error: {one_line(e)}; {where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
