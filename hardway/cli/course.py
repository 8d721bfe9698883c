"""`hardway course add|remove|list`: the courses on this hub (courses.list), applied at
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
