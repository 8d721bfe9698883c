"""Courses (nbgrader) as a setting: ``courses.list`` maps each course id to its title.

Design (docs/courses.md, docs/design-notes.md):

- **Who is in a course is the hub's groups**: ``nbgrader-ID`` (students) and
  ``formgrade-ID`` (instructors and graders). LTI launches put users in them; the admin
  page and ``hardway course enrol|drop`` change them. Settings say which courses exist.
- **Each course runs its own formgrader** as a systemd unit (``hardway-course-ID``), as
  the course's own unprivileged account (``grader-ID``), registered with the hub as a
  service at ``/services/ID/``: instructors and graders reach it through a role on their
  group holding one scope, ``access:services!service=ID`` (never ``admin:users``).
  Autograding runs students' code there, confined like a user's server.
- **The exchange** (``/var/lib/hardway/exchange``, mode 1777 as nbgrader requires) holds a
  directory per course owned by the course account and the unix group ``course-ID``
  (mode 2750): only the course's members, whose accounts the spawners put in that group
  from their hub groups at each server start, can see or submit to it.
- A course's files (its nbgrader directory, gradebook) are the course account's, in
  ``/var/lib/hardway/courses/ID`` (0700).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from hardway.errors import SystemError_
from hardway.plugin import ConfigError, Context, File, Key, Paths, Settings, hookimpl
from hardway.plugin import keytypes as kt
from hardway.render import HEADER, HUB_PORT, memory_limit

#: a course id: the service name, the nbgrader course id, in unix names (grader-, course-)
COURSE_ID = r"[a-z][a-z0-9-]{1,23}"
COURSE_ACCEPTED = ("a course id: 2-24 lowercase letters, digits and '-', starting with a "
                   "letter (e.g. data-101)")
#: nbgrader 0.9.6 needs this Python
MIN_PYTHON = (3, 11)
#: formgraders listen on 127.0.0.1, at a port derived from the course id in this range
PORTS = range(20000, 30000)


class CourseMap(kt.MapOf):
    """``{course id: title}``; the ids are checked."""

    def __init__(self) -> None:
        super().__init__(kt.Str(r"[^\r\n]{0,200}", "a title on one line (up to 200 "
                                "characters)"))
        self.accepted = f"a mapping of course ids to titles ({COURSE_ACCEPTED})"

    def check(self, value: Any) -> dict[str, Any]:
        out = super().check(value)
        for cid in out:
            if not re.fullmatch(COURSE_ID, cid):
                raise kt.BadValue(f"{cid!r} is not {COURSE_ACCEPTED}")
        return out


@hookimpl
def hardway_config_keys() -> list[Key]:
    return [
        Key("courses.list", CourseMap(), {},
            "Courses on this hub: course id -> title (`hardway course add` writes it). "
            "Each gets an nbgrader formgrader at /services/ID/ and hub groups "
            "nbgrader-ID (students) and formgrade-ID (instructors, graders).",
            owner="courses"),
        Key("courses.lti", kt.MapOf(kt.Str(COURSE_ID, COURSE_ACCEPTED)), {},
            "LMS courses -> courses here: the LTI context id of a course in the LMS (its "
            "launches' context claim; LTI 1.1: context_id) -> the course id. A launch from "
            "it puts instructors, TAs and content developers in formgrade-ID and learners "
            "in nbgrader-ID (auth.type lti13 or lti11).", owner="courses"),
        Key("courses.lti_create", kt.Bool(), False,
            "An instructor's LTI launch from an LMS course mapped to none asks for a course "
            "for it: created within a minute (its id from the LMS course's label or title, "
            "mapped in courses.lti); the instructor's next launch lands in its "
            "formgrader. Off: such launches only log the LMS course's id.",
            owner="courses"),
        Key("courses.grades_every", kt.Int(0, 10080), 0,
            "Send every course's new autograded scores to the LMS every this many "
            "minutes (a systemd timer running `hardway course grades --all`); 0: only "
            "when `hardway course grades` is run.", owner="courses"),
    ]


def course_ids(settings: Settings) -> list[str]:
    return sorted(settings["courses.list"])


def account(cid: str) -> str:
    return f"grader-{cid}"


def unix_group(cid: str) -> str:
    return f"course-{cid}"


def unit_name(cid: str) -> str:
    return f"hardway-course-{cid}.service"


def port(cid: str) -> int:
    """The course's formgrader port: derived from its id (stable, no state to keep)."""
    digest = int.from_bytes(hashlib.sha256(cid.encode()).digest()[:4], "big")
    return PORTS.start + digest % len(PORTS)


def token_file(paths: Paths, cid: str) -> Path:
    return paths.secrets / f"course-{cid}.api_token"


def course_home(paths: Paths, cid: str) -> Path:
    return paths.state / "courses" / cid


def exchange(paths: Paths) -> Path:
    return paths.state / "exchange"


def global_config_file(paths: Paths) -> Path:
    """The nbgrader configuration every user's server reads."""
    return paths.jupyter_etc / "nbgrader_config.py"


def config_dir(paths: Paths, cid: str) -> Path:
    """The course's nbgrader configuration: root-owned, readable by its formgrader."""
    return paths.state / "course-config" / cid


def check_python() -> None:
    """nbgrader's Python: one clear line where this machine's is older."""
    if sys.version_info[:2] < MIN_PYTHON:
        raise ConfigError(
            f"courses.list: nbgrader needs Python >= {'.'.join(map(str, MIN_PYTHON))} and "
            f"this machine's is {sys.version_info.major}.{sys.version_info.minor}: courses "
            "cannot be added here (Debian 12+ and Ubuntu 24.04+ have it)")


def check(settings: Settings) -> None:
    ids = course_ids(settings)
    if ids:
        check_python()
    for context, cid in sorted(settings["courses.lti"].items()):
        if cid not in ids:
            raise ConfigError(f"courses.lti: the LMS course {context!r} maps to {cid!r}, "
                              "which is not in courses.list (add it: hardway course add "
                              f"{cid})")
    taken: dict[int, str] = {}
    for cid in ids:
        if port(cid) in taken:
            raise ConfigError(f"courses.list: the courses {taken[port(cid)]!r} and {cid!r} "
                              f"would share port {port(cid)}: give one another id")
        taken[port(cid)] = cid


@hookimpl
def hardway_user_packages(settings: Settings) -> list[str]:
    check(settings)
    # nbgitpuller: instructors' links to a repository open it in students' servers
    return ["nbgrader", "nbgitpuller"] if course_ids(settings) else []


@hookimpl
def hardway_apt_packages(settings: Settings) -> list[str]:
    return ["git"] if course_ids(settings) else []  # nbgitpuller runs git


@hookimpl
def hardway_generated_secrets(settings: Settings, paths: Paths) -> list[Path]:
    return [token_file(paths, cid) for cid in course_ids(settings)]


def global_config(paths: Paths) -> bytes:
    return (f"# {HEADER}\n"
            "# nbgrader for every user of this hub (hardway courses): one exchange, a\n"
            "# directory per course in it; courses a user is in are their hub groups.\n"
            "from nbgrader.auth import JupyterHubAuthPlugin\n\n"
            "c = get_config()  # noqa: F821\n"
            f"c.Exchange.root = {str(exchange(paths))!r}\n"
            "c.Exchange.path_includes_course = True\n"
            "c.Authenticator.plugin_class = JupyterHubAuthPlugin\n").encode()


def course_config(paths: Paths, cid: str) -> bytes:
    return (f"# {HEADER}\n"
            f"# the course {cid}: its nbgrader directory (its formgrader runs as "
            f"{account(cid)})\n"
            "from nbgrader.auth import NoAuthPlugin\n\n"
            "c = get_config()  # noqa: F821\n"
            f"c.CourseDirectory.root = {str(course_home(paths, cid) / 'course')!r}\n"
            f"c.CourseDirectory.course_id = {cid!r}\n"
            "# the course's own account, not a hub user: no hub groups to look up (it\n"
            "# sees its one course; who may open it is the hub's role on formgrade-ID)\n"
            "c.Authenticator.plugin_class = NoAuthPlugin\n").encode()


def _quoted(assignment: str) -> str:
    """One systemd ``Environment=`` assignment, double-quoted (JSON values hold quotes)."""
    escaped = assignment.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def formgrader_unit(settings: Settings, ctx: Context, cid: str) -> bytes:
    p = ctx.paths
    base = settings["base_url"]
    prefix = f"{base}services/{cid}/"
    env = {
        "HOME": str(course_home(p, cid)),
        # nbgrader runs its tools (alembic for the gradebook) by name
        "PATH": f"{p.user_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "JUPYTER_CONFIG_PATH": str(config_dir(p, cid)),
        "JUPYTERHUB_SERVICE_NAME": cid,
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port(cid)}",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{HUB_PORT}{base}hub/api",
        "JUPYTERHUB_BASE_URL": base,
        "JUPYTERHUB_CLIENT_ID": f"service-{cid}",
        "JUPYTERHUB_USER": account(cid),
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([f"access:services!service={cid}"]),
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps([f"access:services!service={cid}"]),
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "JUPYTERHUB_DEFAULT_URL": "/formgrader",
    }
    single = p.user_venv / "bin" / "jupyterhub-singleuser"
    # the token reaches the process through a systemd credential (never in the unit)
    start = (f'/bin/sh -c \'JUPYTERHUB_API_TOKEN="$$(cat "$$CREDENTIALS_DIRECTORY/'
             f'api-token")" exec {single} --ServerApp.root_dir={course_home(p, cid)} '
             f'--ServerApp.ip=127.0.0.1 --ServerApp.port={port(cid)}\'')
    lines = [f"# {HEADER}", "[Unit]",
             f"Description=hardway: the formgrader of course {cid} (nbgrader)",
             "After=network.target", "", "[Service]",
             f"User={account(cid)}", f"Group={account(cid)}",
             f"WorkingDirectory={course_home(p, cid)}",
             *(f"Environment={_quoted(f'{k}={v}')}" for k, v in env.items()),
             f"LoadCredential=api-token:{token_file(p, cid)}",
             f"ExecStart={start}",
             "Restart=on-failure", "RestartSec=2",
             # autograding runs students' code here: confined like a user's server
             "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
             f"ReadWritePaths={course_home(p, cid)} {exchange(p)}",
             "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes",
             "ProtectKernelModules=yes", "ProtectControlGroups=yes",
             # (no RestrictSUIDSGID: nbgrader makes the inbound directory setgid)
             "CapabilityBoundingSet=",
             "ProtectProc=invisible", "UMask=0077"]
    memory = memory_limit(settings["limits.memory"], ctx.memory_total)
    if memory:
        lines.append(f"MemoryMax={memory}")
    return ("\n".join(lines) + "\n\n[Install]\nWantedBy=multi-user.target\n").encode()


GRADES_TIMER = "hardway-course-grades.timer"
REQUESTS_PATH = "hardway-course-requests.path"


def requests_dir(paths: Paths) -> Path:
    """Where the hub leaves instructors' requests for a course (root-only): a systemd
    path unit runs `hardway course requests` when one arrives."""
    return paths.hub_dir / "course-requests"


def lti_create(settings: Settings) -> bool:
    return bool(settings["courses.lti_create"]) and settings["auth.type"] in ("lti11",
                                                                               "lti13")


def triggered_job(ctx: Context, trigger: str, description: str, command: str,
                  trigger_unit: str, after: str = "") -> list[File]:
    """A oneshot job running `hardway COMMAND` as root, and the unit that starts it
    (``trigger``: a .timer or .path, its text ``trigger_unit``). Both files are the
    trigger's component: a change restarts the trigger, never runs the job."""
    service = (f"# {HEADER}\n[Unit]\nDescription=hardway: {description}\n{after}\n"
               "[Service]\nType=oneshot\n"
               f"ExecStart={ctx.paths.cli_link} {command}\nTimeoutStartSec=30min\n")
    job = trigger.rsplit(".", 1)[0] + ".service"
    return [File(ctx.paths.unit(job), service.encode(), component=trigger),
            File(ctx.paths.unit(trigger), f"# {HEADER}\n{trigger_unit}".encode(),
                 component=trigger)]


def requests_units(settings: Settings, ctx: Context) -> list[File]:
    """The path unit watching the requests directory, and the job it starts (as root:
    it edits the settings and reloads, as `hardway course add` does)."""
    if not lti_create(settings):
        return []
    return triggered_job(
        ctx, REQUESTS_PATH, "create the courses instructors' launches asked for",
        "course requests",
        "[Unit]\nDescription=hardway: instructors' requests for a course\n\n[Path]\n"
        f"DirectoryNotEmpty={requests_dir(ctx.paths)}\nMakeDirectory=yes\n"
        "DirectoryMode=0700\n\n[Install]\nWantedBy=paths.target\n")


def grades_units(settings: Settings, ctx: Context) -> list[File]:
    """The timer that sends new scores to the LMS (courses.grades_every), and its job
    (as root: it reads the tool's key and runs nbgrader as each course's account)."""
    every = settings["courses.grades_every"]
    if not every:
        return []
    return triggered_job(
        ctx, GRADES_TIMER, "send the courses' new scores to the LMS", "course grades --all",
        "[Unit]\nDescription=hardway: send the courses' new scores to the LMS every "
        f"{every} min\n\n[Timer]\nOnActiveSec=2min\nOnUnitInactiveSec={every}min\n"
        "RandomizedDelaySec=30s\n\n[Install]\nWantedBy=timers.target\n",
        after="After=network-online.target jupyterhub.service\n")


@hookimpl
def hardway_files(settings: Settings, ctx: Context) -> list[File]:
    p = ctx.paths
    ids = course_ids(settings)
    if not ids:
        return requests_units(settings, ctx)
    files = [File(global_config_file(p), global_config(p), 0o644), *grades_units(settings, ctx),
             *requests_units(settings, ctx)]
    for cid in ids:
        files += [
            File(config_dir(p, cid) / "nbgrader_config.py", course_config(p, cid), 0o644,
                 component=unit_name(cid)),
            File(p.unit(unit_name(cid)), formgrader_unit(settings, ctx, cid),
                 component=unit_name(cid)),
        ]
    return files


@hookimpl
def hardway_hub_config(settings: Settings, ctx: Context) -> dict[str, Any]:
    ids = course_ids(settings)
    if not ids:
        return _lti_config(settings, ctx)
    services, roles, groups = [], [], {}
    for cid in ids:
        token = ctx.read(token_file(ctx.paths, cid))
        services.append({
            "name": cid, "url": f"http://127.0.0.1:{port(cid)}",
            "api_token": token.decode().strip() if token else "",
            "display": True, "oauth_no_confirm": True,
            "info": {"title": settings["courses.list"][cid] or cid, "kind": "course"},
        })
        roles.append({"name": f"formgrade-{cid}",
                      "description": f"grade the course {cid} (its formgrader)",
                      "scopes": [f"access:services!service={cid}"],
                      "groups": [f"formgrade-{cid}"]})
        groups[f"nbgrader-{cid}"] = {}
        groups[f"formgrade-{cid}"] = {}
    config: dict[str, Any] = {
        "JupyterHub": {"services": services, "load_roles": roles, "load_groups": groups},
        # servers' accounts join each course's unix group from their hub groups (the
        # exchange's course directories are that group's)
        "UnixAccounts": {"unix_groups": {
            **{f"nbgrader-{cid}": unix_group(cid) for cid in ids},
            **{f"formgrade-{cid}": unix_group(cid) for cid in ids}}},
    }
    config.update(_lti_config(settings, ctx))
    if settings["spawner.type"] == "docker":
        # containers get the exchange and the global nbgrader config at the same paths
        config["HardwayDockerSpawner"] = {"shared_paths": {
            str(exchange(ctx.paths)): "rw", str(global_config_file(ctx.paths)): "ro"}}
    return config


def _lti_config(settings: Settings, ctx: Context) -> dict[str, Any]:
    """Launches put users in their LMS course's group (the LTI plugin does it), and may
    ask for a course."""
    out: dict[str, Any] = {}
    if settings["auth.type"] in ("lti11", "lti13") and settings["courses.lti"]:
        out["courses"] = dict(sorted(settings["courses.lti"].items()))
    if lti_create(settings):
        out["create_requests_dir"] = str(requests_dir(ctx.paths))
    return {"LtiCourses": out} if out else {}


@hookimpl
def hardway_post_install(settings: Settings, ctx: Context) -> None:
    """Each course's account, unix group and directories, made if missing (kept when a
    course is removed from the list: its files and gradebook are the course's record)."""
    system = ctx.system
    if system is None or not course_ids(settings):
        return
    p = ctx.paths
    ex = exchange(p)
    system.run(["install", "-d", "-m", "1777", "-o", "root", "-g", "root", str(ex)])
    system.run(["install", "-d", "-m", "0711", "-o", "root", "-g", "root",
                str(p.state / "courses")])
    for cid in course_ids(settings):
        name, group, home = account(cid), unix_group(cid), course_home(p, cid)
        if not system.user_exists(name):
            system.run(["useradd", "--system", "--user-group", "--home-dir", str(home),
                        "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--comment", f"hardway course {cid}", name])
            ctx.notes.append(f"created the account {name} (the course {cid}'s formgrader)")
        if system.run(["getent", "group", group], check=False).returncode != 0:
            system.run(["groupadd", "--system", group])
        system.run(["usermod", "--append", "--groups", group, name])
        system.run(["install", "-d", "-m", "0700", "-o", name, "-g", name, str(home)])
        system.run(["install", "-d", "-m", "0700", "-o", name, "-g", name,
                    str(home / "course")])
        # students reach the course's exchange directory through its group only
        system.run(["install", "-d", "-m", "2750", "-o", name, "-g", group, str(ex / cid)])


@hookimpl
def hardway_backup_paths(settings: Settings, paths: Paths) -> list[Path]:
    """Courses' files and gradebooks, and the exchange (submissions not yet collected)."""
    if not course_ids(settings):
        return []
    return [paths.state / "courses", exchange(paths)]


def git_pull_link(hub: str, repo: str, branch: str = "", path: str = "",
                  app: str = "lab") -> str:
    """An nbgitpuller link: opening it (logged in) clones or updates ``repo`` in the
    user's home (into a directory named after the repository) and opens ``path`` in it,
    or the directory. ``hub``: the hub's public URL (ends with its base URL)."""
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(repo)
    if parts.scheme not in ("https", "http", "git", "ssh", "file") or not parts.path.strip("/"):
        raise ConfigError(f"repository: {repo!r} is not a git URL; expected e.g. "
                          "https://github.com/ORG/REPO (or git://, ssh://)")
    target = parts.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    opened = f"{target}/{path.lstrip('/')}" if path else target
    query = {"repo": repo, **({"branch": branch} if branch else {}),
             "targetpath": target,
             "urlpath": f"{'lab/tree' if app == 'lab' else 'tree'}/{opened}"}
    return f"{hub.rstrip('/')}/hub/user-redirect/git-pull?{urlencode(query)}"


#: run by the course's account in the users' environment: the gradebook's autograded
#: submissions, through nbgrader's own API (one JSON line after the marker)
SCORES_SCRIPT = """
import json, sys
from nbgrader.api import Gradebook
out = []
with Gradebook(sys.argv[1], course_id=sys.argv[2]) as gb:
    for a in gb.assignments:
        for s in gb.assignment_submissions(a.name):
            out.append({"assignment": a.name, "student": s.student_id,
                        "score": float(s.score), "max_score": float(s.max_score),
                        "needs_manual_grade": bool(s.needs_manual_grade)})
print("HARDWAY-SCORES " + json.dumps(out))
"""


def gradebook(paths: Paths, cid: str) -> Path:
    """nbgrader's default gradebook of the course (in its course directory)."""
    return course_home(paths, cid) / "course" / "gradebook.db"


def read_scores(system: Any, paths: Paths, cid: str) -> list[dict[str, Any]]:
    """Every autograded submission of the course: assignment, student (nbgrader's id:
    the unix account), score, max_score, needs_manual_grade. Read as the course's
    account (root never opens the course's files), with nbgrader's API."""
    book = gradebook(paths, cid)
    if not book.exists():
        return []
    python = paths.user_venv / "bin" / "python"
    r = system.run(["runuser", "-u", account(cid), "--", "env", "-i",
                    f"HOME={course_home(paths, cid)}", "PATH=/usr/bin:/bin", str(python),
                    "-c", SCORES_SCRIPT, f"sqlite:///{book}", cid],
                   check=False, timeout=300)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("HARDWAY-SCORES "):
            return list(json.loads(line.removeprefix("HARDWAY-SCORES ")))
    tail = "\n".join(r.stdout.strip().splitlines()[-5:])
    raise SystemError_(f"the gradebook of course {cid} ({book}) could not be read "
                      f"(exit status {r.returncode}):\n{tail}")


def course_id_for(label: str, title: str, context_id: str, taken: set[str]) -> str:
    """A course id for an LMS course: from its label (e.g. "PHYS 210" -> phys-210), else
    its title, else its context id's digest; made unique among ``taken`` (ids and
    formgrader ports)."""
    base = ""
    for text in (label, title):
        slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
        if slug and not slug[0].isalpha():
            slug = f"c-{slug}"
        slug = slug[:24].rstrip("-")
        if len(slug) >= 2:
            base = slug
            break
    if not base:
        base = "lms-" + hashlib.sha256(context_id.encode()).hexdigest()[:8]
    ports = {port(t) for t in taken}
    cid, n = base, 1
    while cid in taken or port(cid) in ports or not re.fullmatch(COURSE_ID, cid):
        n += 1
        cid = f"{base[:24 - len(str(n)) - 1].rstrip('-')}-{n}"
    return cid
