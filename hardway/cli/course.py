"""`hardway course add|remove|list|link|grades`: the courses on this hub (courses.list), applied at
once (a reload: the new course's formgrader starts, the hub restarts; users' servers keep
running). Who is in a course is the hub's groups nbgrader-ID and formgrade-ID (LTI
launches, the admin page)."""

from __future__ import annotations

import argparse
from typing import Any

from hardway.errors import HardwayError, UsageError
from hardway.paths import Paths

from . import require_root


def _apply(paths: Paths, change: Any, timeout: float, keys: list[str]) -> None:
    """Edit courses.list (validated, atomic), then reload; if the reload fails, the
    previous config.yaml is put back (the reload has put back its files already)."""
    from hardway.apply.files import write_atomic
    from hardway.apply.system import System
    from hardway.ops.reload import reload

    from .config import _edit

    before = paths.config_file.read_bytes() if paths.config_file.exists() else None
    _edit(paths, keys, change, dry_run=False, applied_here=True)
    try:
        reload(paths, System(), timeout=timeout)
    except HardwayError as e:
        if before is not None:
            write_atomic(paths.config_file, before, 0o600, 0, 0)
        raise type(e)(f"{e}\n{paths.config_file} was put back as it was before this "
                      "command") from None


def cmd_add(args: argparse.Namespace, paths: Paths) -> int:
    from hardway_plugins.courses import courses

    require_root()
    courses.check_python()
    title = " ".join(args.title.split()) if args.title else ""

    def change(doc: Any, key: Any) -> str:
        current = dict(doc.get(key.name) or {})
        if key.name == "courses.lti":
            if not args.lti_context:
                return ""
            if args.lti_context in current and current[args.lti_context] != args.id:
                raise UsageError(f"--lti-context: the LMS course {args.lti_context!r} is "
                                 f"the course {current[args.lti_context]!r} already "
                                 "(courses.lti)")
            doc.set(key.name, {**current, args.lti_context: args.id})
            return f"mapped the LMS course {args.lti_context!r} to {args.id} (courses.lti)"
        if args.id in current:
            # again: applied again (it finishes an add that was interrupted before its
            # reload); a new title replaces the old one
            if title and title != current[args.id]:
                doc.set(key.name, {**current, args.id: title})
                return f"course {args.id} is there already; its title is now {title!r}"
            return f"course {args.id} is in courses.list already: applying it"
        doc.set(key.name, {**current, args.id: title})
        return f"added the course {args.id} to courses.list in {paths.config_file}"

    _apply(paths, change, args.timeout, ["courses.list", "courses.lti"])
    print(f"hardway: course {args.id}: its formgrader is /services/{args.id}/formgrader "
          f"for the hub groups formgrade-{args.id} (instructors, graders); students are "
          f"the group nbgrader-{args.id}")
    return 0


def cmd_remove(args: argparse.Namespace, paths: Paths) -> int:
    require_root()

    def change(doc: Any, key: Any) -> str:
        current = dict(doc.get(key.name) or {})
        if key.name == "courses.lti":  # the LMS courses mapped to it go with it
            kept = {ctx: cid for ctx, cid in current.items() if cid != args.id}
            if kept != current:
                doc.set(key.name, kept)
            return ""
        if args.id not in current:
            from hardway_plugins.courses import courses

            if paths.unit(courses.unit_name(args.id)).exists():
                # a remove interrupted before its reload: this one finishes it
                return f"course {args.id} is out of courses.list already: applying it"
            raise UsageError(f"there is no course {args.id!r} in courses.list (it holds: "
                             f"{', '.join(sorted(current)) or 'none'})")
        current.pop(args.id)
        doc.set(key.name, current)
        return f"removed the course {args.id} from courses.list in {paths.config_file}"

    _apply(paths, change, args.timeout, ["courses.list", "courses.lti"])
    print(f"hardway: course {args.id}: its formgrader is stopped; its files, gradebook and "
          "account are kept (add it again to get them back)")
    return 0


def cmd_list(args: argparse.Namespace, paths: Paths) -> int:
    from hardway_plugins.courses import courses

    from hardway.apply.system import System
    from hardway.plugin.manager import Registry, load_settings, make_manager

    settings = load_settings(paths, Registry(make_manager()))
    listed = settings["courses.list"]
    if not listed:
        print("no courses (add one: sudo hardway course add ID --title TITLE)")
        return 0
    system = System()
    for cid in sorted(listed):
        state = system.unit_state(courses.unit_name(cid))
        print(f"{cid}\t{listed[cid] or '-'}\tformgrader {state.get('ActiveState', '?')} "
              f"at {settings['base_url']}services/{cid}/formgrader")
    return 0


def cmd_link(args: argparse.Namespace, paths: Paths) -> int:
    from hardway_plugins.courses import courses

    from hardway.plugin import hub_url
    from hardway.plugin.manager import Registry, load_settings, make_manager

    settings = load_settings(paths, Registry(make_manager()))
    if not settings["courses.list"]:
        raise UsageError("nbgitpuller comes with courses: add one first (sudo hardway course "
                         "add ID)")
    print(courses.git_pull_link(hub_url(settings), args.repo, args.branch, args.path,
                                args.app))
    return 0


def cmd_requests(args: argparse.Namespace, paths: Paths) -> int:
    """Create the courses instructors' launches asked for (courses.lti_create): what the
    path unit hardway-course-requests runs when the hub leaves a request. Every request
    read leaves the directory: done, already there, or set aside in course-requests.failed
    with the reason in the journal."""
    import json
    import os

    from hardway_plugins.courses import courses

    from hardway.plugin.manager import Registry, load_settings, make_manager

    require_root()
    settings = load_settings(paths, Registry(make_manager()))
    spool = courses.requests_dir(paths)
    failed = spool.with_name(spool.name + ".failed")
    found = sorted(p for p in spool.iterdir() if p.is_file() and not p.is_symlink()) \
        if spool.is_dir() else []
    if not found:
        print("hardway: no request for a course")
        return 0

    def set_aside(path: Any, why: str) -> None:
        failed.mkdir(mode=0o700, exist_ok=True)
        os.replace(path, failed / path.name)
        print(f"hardway: the request {path.name} was set aside in {failed}: {why}")

    if not courses.lti_create(settings):
        for path in found:
            set_aside(path, "courses.lti_create is off")
        return 0
    mapped = dict(settings["courses.lti"])
    taken = set(settings["courses.list"])
    wanted: dict[str, tuple[str, str, str]] = {}  # LMS context -> (course id, title, by)
    done = []
    for path in found:
        try:
            req = json.loads(path.read_text())
            context, title, label = req["context_id"], req.get("title", ""), req.get(
                "label", "")
            if not (isinstance(context, str) and context and len(context) <= 255
                    and isinstance(title, str) and isinstance(label, str)):
                raise ValueError("context_id, title or label is not text")
        except (OSError, ValueError, KeyError, TypeError) as e:
            set_aside(path, f"not a request: {e}")
            continue
        done.append(path)
        if context in mapped or context in wanted:
            continue  # asked twice, or made meanwhile
        cid = courses.course_id_for(label, title, context, taken)
        taken.add(cid)
        title = " ".join(title.split())[:200] or label or context
        wanted[context] = (cid, title, str(req.get("by") or "?"))
    if wanted:
        def change(doc: Any, key: Any) -> str:
            current = dict(doc.get(key.name) or {})
            if key.name == "courses.lti":
                doc.set(key.name, {**current, **{ctx: w[0] for ctx, w in wanted.items()}})
                return ""
            doc.set(key.name, {**current, **{w[0]: w[1] for w in wanted.values()}})
            return "added " + ", ".join(f"the course {cid} for the LMS course {ctx!r} "
                                        f"(asked by {by})"
                                        for ctx, (cid, _, by) in wanted.items())

        try:
            _apply(paths, change, args.timeout, ["courses.list", "courses.lti"])
        except HardwayError as e:
            for path in done:
                set_aside(path, "the reload failed")
            raise HardwayError(f"{e}\nthe requests were set aside in {failed}: after a "
                               "fix, move them back into " + str(spool)) from None
    for path in done:
        path.unlink(missing_ok=True)
    for ctx, (cid, _, by) in wanted.items():
        print(f"hardway: course {cid} created for the LMS course {ctx!r}, asked by {by}: "
              "their next launch from it lands in its formgrader")
    return 0


def _fmt(x: float) -> str:
    return f"{x:g}"


def cmd_grades(args: argparse.Namespace, paths: Paths) -> int:
    """Send the course's autograded scores to the LMS gradebook (LTI 1.3 AGS, LTI 1.1
    Basic Outcomes); what the LMS accepted is kept, the rest is sent by the next run."""
    from hardway.plugin.manager import Registry, load_settings, make_manager

    require_root()
    settings = load_settings(paths, Registry(make_manager()))
    listed = settings["courses.list"]
    if args.all == bool(args.id):
        raise UsageError("course grades: name one course (ID) or give --all")
    if args.all and args.assignment:
        raise UsageError("--assignment: names an assignment of one course; it cannot go "
                         "with --all")
    if args.id and args.id not in listed:
        raise UsageError(f"there is no course {args.id!r} in courses.list (it holds: "
                         f"{', '.join(sorted(listed)) or 'none'})")
    ok = True
    for cid in sorted(listed) if args.all else [args.id]:
        ok = _send_grades(settings, paths, cid, args.assignment, args.timeout) and ok
    return 0 if ok else 1


def _send_grades(settings: Any, paths: Paths, cid: str, assignment: str,
                 timeout: float) -> bool:
    import sys

    from hardway_plugins.auth import lti, lti_grades
    from hardway_plugins.courses import courses
    from hardway_plugins.spawner.systemd import unix_name, user_prefix

    from hardway.apply.system import System
    from hardway.errors import ConfigError

    rows = courses.read_scores(System(), paths, cid)
    if assignment:
        names = sorted({r["assignment"] for r in rows})
        if assignment not in names:
            raise UsageError(f"--assignment: {assignment!r} has no autograded submission "
                             f"in course {cid} (its gradebook has: "
                             f"{', '.join(names) or 'none'})")
        rows = [r for r in rows if r["assignment"] == assignment]
    if not rows:
        print(f"hardway: course {cid}: no autograded submission yet: nothing to send")
        return True
    store = lti_grades.GradeStore(lti.grades_db_path(paths))
    known = {u for t in store.lti13_targets(cid) for u in t.members}
    known |= {r.username for r in store.lti11_results(cid)}
    existing = settings["auth.type"] == "pam"
    username = {unix_name(u, user_prefix(settings), existing=existing): u
                for u in sorted(known)}
    scores = [lti_grades.Score(r["assignment"], r["student"], username.get(r["student"]),
                               r["score"], r["max_score"], r["needs_manual_grade"])
              for r in rows]
    key_file = lti.tool_key_file(paths)
    key = key_file.read_text() if key_file.exists() else None
    lti11_secrets: dict[str, str] = {}
    if "auth.lti11.consumers" in settings.decl and settings["auth.lti11.consumers"]:
        try:
            lti11_secrets = lti.consumer_secrets(settings)
        except ConfigError as e:
            print(f"hardway: LTI 1.1 grades cannot be signed: {e}", file=sys.stderr)
    token_url = (settings["auth.lti13.token_url"]
                 if "auth.lti13.token_url" in settings.decl else "")
    report = lti_grades.send_all(store, cid, scores, token_url=token_url,
                                 private_key=key, lti11_secrets=lti11_secrets,
                                 timeout=timeout)
    print(f"hardway: course {cid}: grades for the LMS")
    for line in sorted(report.lines, key=lambda x: (x.score.assignment, x.score.student)):
        s = line.score
        who = f"{s.username} ({s.student})" if s.username else s.student
        label = {"sent": "sent", "unchanged": "unchanged", "unknown": "not sent",
                 "failed": "NOT SENT", "refused": "REFUSED"}[line.status]
        print(f"  {s.assignment}\t{who}\t{_fmt(s.score)}/{_fmt(s.max_score)}\t{label}: "
              f"{line.detail}")
    print(f"sent {report.count('sent')}, unchanged {report.count('unchanged')}, "
          f"no LMS identity {report.count('unknown')}, refused {report.count('refused')}, "
          f"not sent {report.count('failed')}")
    for error in report.errors:
        print(f"hardway: error: {error}", file=sys.stderr)
    if not report.ok:
        print(f"hardway: nothing is lost: the scores not sent are sent by the next `hardway "
              f"course grades {cid}`", file=sys.stderr)
    return report.ok


def add_course_parser(sub: Any) -> None:
    p = sub.add_parser("course", help="the courses on this hub (nbgrader): add, remove, list")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    a = verbs.add_parser("add", help="add a course: its formgrader, groups and role")
    a.add_argument("id", metavar="ID", help="the course id, e.g. data-101")
    a.add_argument("--title", default="", help="its title")
    a.add_argument("--lti-context", metavar="CONTEXT_ID",
                   help="the LMS course whose launches join this one (its LTI context id)")
    a.set_defaults(func=cmd_add)
    r = verbs.add_parser("remove", help="remove a course (its files are kept)")
    r.add_argument("id", metavar="ID")
    r.set_defaults(func=cmd_remove)
    for q in (a, r):
        q.add_argument("--timeout", type=float, default=300,
                       help="seconds to wait for the services (default: %(default)s)")
    ls = verbs.add_parser("list", help="the courses and their formgraders")
    ls.set_defaults(func=cmd_list)
    li = verbs.add_parser("link", help="an nbgitpuller link: students who open it get a git "
                                       "repository's files in their server")
    li.add_argument("repo", metavar="REPO", help="the repository's git URL")
    li.add_argument("--branch", default="", help="its branch (default: its default branch)")
    li.add_argument("--path", default="", help="the file to open in it (default: its folder)")
    li.add_argument("--app", choices=("lab", "notebook"), default="lab",
                    help="open it in JupyterLab or the classic notebook (default: lab)")
    li.set_defaults(func=cmd_link)
    g = verbs.add_parser("grades", help="send the course's autograded scores to the LMS "
                                        "gradebook (LTI 1.3 or 1.1)")
    g.add_argument("id", metavar="ID", nargs="?", default="")
    g.add_argument("--all", action="store_true", help="every course (what the timer of "
                   "courses.grades_every runs)")
    g.add_argument("--assignment", default="", help="only this nbgrader assignment")
    g.add_argument("--timeout", type=float, default=20,
                   help="seconds to wait for each answer of the LMS (default: %(default)s)")
    g.set_defaults(func=cmd_grades)
    q = verbs.add_parser("requests", help="create the courses instructors' LTI launches "
                                          "asked for (courses.lti_create; its path unit "
                                          "runs this)")
    q.add_argument("--timeout", type=float, default=300,
                   help="seconds to wait for the services (default: %(default)s)")
    q.set_defaults(func=cmd_requests)
