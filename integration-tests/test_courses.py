"""Issue 14 on a booted host: two courses on one hub whose memberships come from LTI 1.3
launches (a real platform peer: its context and roles claims), the whole nbgrader cycle
through the course's formgrader and the students' own servers, and who can see what.

The users, each launching from the LMS course they are in:

- prof: Instructor in data-101 and stats-2 (lands in each course's formgrader)
- ta: TeachingAssistant in data-101 only
- ana: Learner in both; ben: Learner in stats-2 only

One container (the systemd spawner), in order: install, `hardway course add` x2 (each
mapped to its LMS course), the switch to LTI 1.3, the launches, the cycle in data-101
(prof writes and releases ps1 through the formgrader's API; ana fetches, solves and
submits in her server's kernel with nbgrader's own commands; prof collects, autogrades,
releases feedback; ana fetches it), the refusals (ben sees nothing of data-101, ta cannot
open stats-2's formgrader, ana cannot open the gradebook or list others' submissions,
students cannot open a formgrader), then a third course added while ana's server runs.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import install_fresh, record
from hubclient import HubUser, wait_for_hub
from nbgrader_cycle import NBGRADER, feedback, solve, step_succeeded, write_source
from peer_lti11 import Lti11Outcomes
from peer_lti13 import Lti13Platform, _session
from peer_lti13 import launch as launch_lti13
from test_auth import post_launch, signed_launch

A, B, C = "data-101", "stats-2", "late-3"
#: each course's LTI context id in the LMS
LMS = {A: "lms-ctx-data-101", B: "lms-ctx-stats-2", C: "lms-ctx-late-3"}
TA_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
PLATFORM_PORT = 9092
LTI11_OUTCOMES_PORT = 9093
EXCHANGE = "/var/lib/hardway/exchange"
SOLVE = solve(A)
FEEDBACK = feedback(A)
#: what a user's kernel can reach of the courses' files
PROBE = f"""
import json, os
def tryit(f):
    try:
        return f()
    except OSError as e:
        return type(e).__name__
print(json.dumps({{
    "exchange_a": tryit(lambda: sorted(os.listdir("{EXCHANGE}/{A}"))),
    "inbound_a": tryit(lambda: os.listdir("{EXCHANGE}/{A}/inbound")),
    "gradebook_a": tryit(lambda: open("/var/lib/hardway/courses/{A}/course/gradebook.db",
                                      "rb").read(1) and "read"),
    "groups": sorted(__import__("grp").getgrgid(g).gr_name for g in os.getgroups()),
}}))
"""


@pytest.fixture(scope="module")
def hub():
    yield from install_fresh("hw-courses")


@pytest.fixture(scope="module")
def platform(hub):
    with Lti13Platform(PLATFORM_PORT, hub.base, "hardway-courses-tool-1") as p:
        yield p


def hw(hub, *args: str, check: bool = True, timeout: float = 900):
    r = hub.c.run(["hardway", *args], check=False, timeout=timeout)
    if check:
        assert r.returncode == 0, f"hardway {' '.join(args)}:\n{r.stdout[-4000:]}\n{r.stderr}"
    return r


#: the hub's users as the tests drive them (signed in by an LTI launch, with a token)
USERS: dict[str, HubUser] = {}


def user(hub, name: str) -> HubUser:
    return USERS[name]


def launch(hub, platform, name: str, cid: str, role: str) -> str:
    """``name`` clicks the tool in the LMS course of ``cid``; returns where the hub sends
    them. The session it leaves signed in (with an API token) is USERS[name]."""
    platform.in_course(name, LMS[cid], role)
    got = launch_lti13(platform, hub.base, name)
    r = got.response
    assert r.status_code == 302, (name, cid, r.status_code, r.text[:500])
    u = HubUser(hub.base, name, "")
    u.s = got.session
    u.s.get(f"{hub.base}/hub/home", timeout=30)  # the _xsrf cookie, as a browser gets it
    u.make_token()
    USERS[name] = u
    return r.headers["Location"]


def groups_of(name: str) -> list[str]:
    r = USERS["alice"].api("GET", f"/hub/api/users/{name}")
    assert r.status_code == 200, r.text
    return sorted(r.json()["groups"])


def kernel(hub, name: str, code: str, timeout: float = 300) -> dict:
    u = user(hub, name)
    u.start_server()
    return json.loads(u.execute(code, timeout=timeout))


def formgrader(u: HubUser, cid: str, method: str, path: str, **kw):
    return u.api(method, f"/services/{cid}/formgrader/api/{path}", timeout=300, **kw)


def step_ok(hub, r, cid: str, what: str) -> None:
    """A formgrader step answered success; else its answer and the course's log."""
    if not step_succeeded(r):
        log = hub.c.run(["journalctl", "-u", f"hardway-course-{cid}", "-n", "60",
                         "--no-pager"], check=False).stdout
        raise AssertionError(f"{what}: {r.status_code} {r.text[:1500]}\n{log[-5000:]}")


def test_1_courses_are_added_with_their_formgraders(hub):
    c = hub.c
    for cid, title in ((A, "Data Science 101"), (B, "Statistics 2")):
        r = hw(hub, "course", "add", cid, "--title", title, "--lti-context", LMS[cid])
        assert f"course {cid}: its formgrader is /services/{cid}/formgrader" in r.stdout
        assert c.run(["systemctl", "is-active", f"hardway-course-{cid}"]).stdout.strip() \
            == "active"
        assert c.run(["stat", "-c", "%U %G %a", f"{EXCHANGE}/{cid}"]).stdout.split() == \
            [f"grader-{cid}", f"course-{cid}", "2750"]
    listed = hw(hub, "course", "list").stdout
    assert re.search(rf"^{A}\tData Science 101\tformgrader active", listed, re.M), listed
    found = {f["id"]: f for f in json.loads(hw(hub, "doctor", "--json", check=False).stdout)}
    assert found[f"unit.hardway-course-{A}.service"]["status"] == "ok", found
    # the formgrader runs as the course's account, not root, and holds no capability
    pid = c.run(["systemctl", "show", "-P", "MainPID", f"hardway-course-{A}"]).stdout.strip()
    status = c.run(["cat", f"/proc/{pid}/status"]).stdout
    uid = c.run(["id", "-u", f"grader-{A}"]).stdout.strip()
    assert re.search(rf"^Uid:\s+{uid}\s", status, re.M) and \
        re.search(r"^CapEff:\s+0+$", status, re.M), status
    # an id that is not one is refused with the key, the value and the accepted form
    r = hw(hub, "course", "add", "Bad_Id", check=False)
    assert r.returncode == 2 and "courses.list" in r.stderr and "'Bad_Id'" in r.stderr
    assert "Traceback" not in r.stderr
    # adding a course again applies it again (what finishes an add killed before its
    # reload) and changes nothing else
    r = hw(hub, "course", "add", A)
    assert f"course {A} is in courses.list already: applying it" in r.stdout, r.stdout
    assert "nothing changed" in r.stdout, r.stdout


def test_2_lti_launches_put_each_user_in_their_courses_groups(hub, platform):
    USERS["alice"] = HubUser(hub.base, "alice", hub.admin_password).sign_in()  # admin
    hw(hub, "config", "set", "auth.lti13.issuer", platform.issuer,
       "auth.lti13.client_id", platform.client_id,
       "auth.lti13.authorize_url", platform.authorize_url,
       "auth.lti13.jwks_url", platform.jwks_url,
       "auth.lti13.username_key", "preferred_username",
       "auth.lti13.token_url", platform.token_url, "auth.type", "lti13")
    hw(hub, "config", "reload")
    formgrader_of = "/services/{}/formgrader"
    assert launch(hub, platform, "prof", A, "Instructor") == formgrader_of.format(A)
    assert launch(hub, platform, "prof", B, "Instructor") == formgrader_of.format(B)
    assert launch(hub, platform, "ta", A, TA_ROLE) == formgrader_of.format(A)
    assert launch(hub, platform, "ana", A, "Learner") == "/hub/user-redirect/lab"
    assert launch(hub, platform, "ana", B, "Learner") == "/hub/user-redirect/lab"
    assert launch(hub, platform, "ben", B, "Learner") == "/hub/user-redirect/lab"
    assert groups_of("prof") == [f"formgrade-{A}", f"formgrade-{B}"]
    assert groups_of("ta") == [f"formgrade-{A}"]
    assert groups_of("ana") == [f"nbgrader-{A}", f"nbgrader-{B}"]
    assert groups_of("ben") == [f"nbgrader-{B}"]
    # a launch from an LMS course mapped to no course here changes nothing
    platform.in_course("ben", "lms-ctx-unknown", "Instructor")
    assert launch_lti13(platform, hub.base, "ben").response.status_code == 302
    assert groups_of("ben") == [f"nbgrader-{B}"]


def test_3_prof_writes_and_releases_an_assignment_through_the_formgrader(hub):
    prof = user(hub, "prof")
    write_source(prof, A)
    for step in ("assign", "release"):
        step_ok(hub, formgrader(prof, A, "POST", f"assignment/ps1/{step}"), A, step)
    released = hub.c.run(["stat", "-c", "%U %a", f"{EXCHANGE}/{A}/outbound/ps1"]).stdout
    assert released.split() == [f"grader-{A}", "755"]


def test_4_ana_fetches_solves_and_submits_in_her_own_server(hub):
    got = kernel(hub, "ana", SOLVE)
    assert got["fetch"]["rc"] == 0, got
    assert got["submit"]["rc"] == 0, got
    assert "Submitted as: " in got["submit"]["out"], got


def test_5_prof_collects_autogrades_and_releases_feedback(hub):
    prof = user(hub, "prof")
    step_ok(hub, formgrader(prof, A, "POST", "assignment/ps1/collect"), A, "collect")
    student = "jupyter-ana"  # nbgrader's student id is the unix account
    step_ok(hub, formgrader(prof, A, "POST", f"submission/ps1/{student}/autograde"), A,
            "autograde")
    for step in ("generate_feedback", "release_feedback"):
        step_ok(hub, formgrader(prof, A, "POST", f"assignment/ps1/{step}"), A, step)
    sub = formgrader(prof, A, "GET", f"submission/ps1/{student}").json()
    record("course-score", {"figure": [sub.get("score"), sub.get("max_score")],
                            "unit": "points", "how": "formgrader API after autograde"})
    assert sub["score"] == sub["max_score"] == 2.0, sub
    # ta grades data-101 too
    ta = user(hub, "ta")
    assert formgrader(ta, A, "GET", "assignments").status_code == 200


def test_6_ana_fetches_her_feedback(hub):
    got = kernel(hub, "ana", FEEDBACK)
    assert got["rc"] == 0 and len(got["files"]) == 1, got


def hand_in(hub, cid: str, student: str) -> None:
    """``student`` hands ps1 in by other means than the exchange (the instructor puts a
    copy of ana's notebook in the course's submitted directory), then prof autogrades it."""
    course = f"/var/lib/hardway/courses/{cid}/course/submitted"
    hub.c.run(["runuser", "-u", f"grader-{cid}", "--", "cp", "-r", f"{course}/jupyter-ana",
               f"{course}/{student}"])
    step_ok(hub, formgrader(user(hub, "prof"), cid, "POST",
                            f"submission/ps1/{student}/autograde"), cid, "autograde")


def grades(hub, cid: str, *extra: str):
    r = hw(hub, "course", "grades", cid, *extra, check=False, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_6b_grades_go_back_to_the_lms(hub, platform):
    """LTI 1.3 Assignment and Grade Services: the platform takes the tool's signed token
    request only with the key at /hub/lti13/jwks; ana's score reaches her line item."""
    jwks = _session().get(f"{hub.base}/hub/lti13/jwks", timeout=30).json()
    assert [(k["kty"], k["alg"], "d" in k) for k in jwks["keys"]] == [("RSA", "RS256", False)]
    hand_in(hub, A, "jupyter-dan")  # dan never launched from the LMS
    ana = platform.user("ana").sub
    # the LMS admin disabled the tool's key: one clear line, nothing marked sent
    platform.ags.revoke()
    r = grades(hub, A)
    errors = [line for line in r.stderr.splitlines() if line.startswith("hardway: error:")]
    assert r.returncode == 1 and len(errors) == 1, (r.stdout, r.stderr)
    assert f"refused this tool's token request at {platform.token_url} (HTTP 401" in errors[0]
    assert "nothing is lost" in r.stderr
    assert re.search(r"^  ps1\tana \(jupyter-ana\)\t2/2\tNOT SENT", r.stdout, re.M), r.stdout
    assert re.search(r"^  ps1\tjupyter-dan\t2/2\tnot sent: no LMS identity", r.stdout,
                     re.M), r.stdout
    assert platform.ags.token_requests[-1] == (401, "the tool's key was disabled")
    assert not platform.ags.lineitems.get(LMS[A])
    # the LMS is down
    platform.ags.restore()
    platform.stop()
    try:
        r = grades(hub, A)
    finally:
        platform.start()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"hardway: error: the LMS could not be reached at {platform.token_url} " \
           "(Connection refused)" in r.stderr, r.stderr
    # back: the next run sends what the others could not
    t0 = time.monotonic()
    r = grades(hub, A)
    record("grades-sent", {"figure": round(time.monotonic() - t0, 2), "unit": "s",
                           "how": "hardway course grades (token, line item, 1 score)"})
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert re.search(r"^  ps1\tana \(jupyter-ana\)\t2/2\tsent: line item 'ps1'", r.stdout,
                     re.M), r.stdout
    assert "sent 1, unchanged 0, no LMS identity 1, refused 0, not sent 0" in r.stdout
    assert platform.ags.gradebook(LMS[A], "ps1") == {ana: 1.0}
    (item,) = platform.ags.lineitems[LMS[A]]
    assert (item["resourceId"], item["scoreMaximum"]) == ("ps1", 2.0)
    # again: nothing new to send, nothing sent twice
    posts = platform.ags.score_posts
    r = grades(hub, A)
    assert r.returncode == 0 and "sent 0, unchanged 1" in r.stdout, r.stdout
    assert platform.ags.score_posts == posts
    r = grades(hub, A, "--assignment", "ps9")
    assert r.returncode == 2 and "--assignment: 'ps9' has no autograded submission in " \
        f"course {A} (its gradebook has: ps1)" in r.stderr, r.stderr


def test_6c_grades_can_go_on_a_timer(hub, platform):
    c = hub.c
    hw(hub, "config", "set", "courses.grades_every", "15")
    hw(hub, "config", "reload")
    assert c.run(["systemctl", "is-active", "hardway-course-grades.timer"]).stdout.strip() \
        == "active"
    assert c.run(["systemctl", "is-enabled", "hardway-course-grades.timer"]
                 ).stdout.strip() == "enabled"
    # what the timer runs: every course, as root; its report is in the journal
    r = c.run(["systemctl", "start", "hardway-course-grades.service"], check=False,
              timeout=300)
    log = c.run(["journalctl", "-u", "hardway-course-grades.service", "--no-pager", "-o",
                 "cat"]).stdout
    assert r.returncode == 0, log
    assert f"hardway: course {A}: grades for the LMS" in log and "sent 0, unchanged 1" in log
    assert f"hardway: course {B}: no autograded submission yet" in log, log
    hw(hub, "config", "set", "courses.grades_every", "0")
    hw(hub, "config", "reload")
    assert not c.path("/etc/systemd/system/hardway-course-grades.timer").exists()
    assert c.run(["systemctl", "is-active", "hardway-course-grades.timer"], check=False
                 ).stdout.strip() != "active"


def test_7_nobody_sees_more_than_their_courses(hub):
    # ben: not in data-101, his account not in its group: nothing of it is reachable
    ben = kernel(hub, "ben", PROBE)
    assert ben["exchange_a"] == "PermissionError", ben
    assert f"course-{A}" not in ben["groups"] and f"course-{B}" in ben["groups"], ben
    listed = kernel(hub, "ben", NBGRADER + "import json\nprint(json.dumps(nbgrader("
                                "'list', '--course', '" + A + "')))")
    assert "ps1" not in listed["out"], listed
    # ana: sees the released assignment, not others' submissions nor the gradebook
    ana = kernel(hub, "ana", PROBE)
    assert "outbound" in ana["exchange_a"], ana
    assert ana["inbound_a"] == "PermissionError", ana
    assert ana["gradebook_a"] == "PermissionError", ana
    # formgraders: a grader of one course only, students none
    ta, ana_u = user(hub, "ta"), user(hub, "ana")
    for who, cid in ((ta, B), (ana_u, A), (ana_u, B)):
        r = formgrader(who, cid, "GET", "assignments")
        assert r.status_code == 403, (who.name, cid, r.status_code, r.text[:300])


def test_8_a_course_added_while_ana_works_leaves_her_server_running(hub, platform):
    c = hub.c
    unit = "jupyter-ana-singleuser"
    before = c.run(["systemctl", "show", "-P", "InvocationID,MainPID", unit]).stdout.split()
    assert c.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
    t0 = time.monotonic()
    hw(hub, "course", "add", C, "--title", "Added late", "--lti-context", LMS[C])
    record("course-add", {"figure": round(time.monotonic() - t0, 1), "unit": "s",
                          "how": "hardway course add (reload: formgrader, hub restart)"})
    assert c.run(["systemctl", "show", "-P", "InvocationID,MainPID", unit]
                 ).stdout.split() == before
    assert launch(hub, platform, "prof", C, "Instructor") == f"/services/{C}/formgrader"
    prof = user(hub, "prof")
    deadline = time.monotonic() + 60
    while (r := formgrader(prof, C, "GET", "assignments")).status_code != 200:
        assert time.monotonic() < deadline, (r.status_code, r.text[:300])
        time.sleep(1)
    assert r.json() == []  # a new course: no assignment yet
    assert user(hub, "ana").execute("1+1") == "2"


PULLED = """
import json, os
path = os.path.expanduser("~/lesson-1/README.md")
print(json.dumps(open(path).read() if os.path.exists(path) else sorted(os.listdir("."))))
"""


def test_8b_an_nbgitpuller_link_brings_a_repository_into_her_server(hub):
    """A repository served by git daemon on 127.0.0.1; the link `hardway course link`
    prints, opened in ana's browser session, and nbgitpuller's own API doing the pull."""
    c = hub.c
    c.run(["sh", "-ec", "rm -rf /tmp/lesson /srv/git && mkdir -p /srv/git && "
           "git init -q -b main /tmp/lesson && cd /tmp/lesson && "
           "printf '# Lesson one\\n' > README.md && git add README.md && "
           "git -c user.email=t@example.edu -c user.name=t commit -q -m one && "
           "git clone -q --bare /tmp/lesson /srv/git/lesson-1.git"])
    # as the repository's owner (git refuses to serve another user's repository)
    c.run(["systemd-run", "--unit", "hw-it-gitd", "git", "daemon", "--export-all",
           "--base-path=/srv/git", "--reuseaddr", "--listen=127.0.0.1", "--port=9418"])
    try:
        repo = "git://127.0.0.1/lesson-1.git"
        deadline = time.monotonic() + 30  # the daemon answers
        while c.run(["git", "ls-remote", repo], check=False).returncode != 0:
            assert time.monotonic() < deadline, c.run(
                ["journalctl", "-u", "hw-it-gitd", "--no-pager"], check=False).stdout
            time.sleep(0.5)
        link = hw(hub, "course", "link", repo, "--path", "README.md").stdout.strip()
        assert link.startswith("http://127.0.0.1/hub/user-redirect/git-pull?"), link
        ana = user(hub, "ana")
        ana.start_server()
        page = ana.s.get(link, timeout=60)  # as her browser: the hub sends it to her server
        assert page.status_code == 200 and "/user/ana/git-pull" in page.url, (
            page.status_code, page.url)
        # what that page's script does: nbgitpuller's event stream, until it is done
        query = page.url.split("?", 1)[1]
        events = []
        with ana.s.get(f"{hub.base}/user/ana/git-pull/api?{query}", stream=True,
                       timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith(b"data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("phase") in ("finished", "error"):
                        break
        assert events[-1].get("phase") == "finished", events[-5:]
        assert json.loads(ana.execute(PULLED)) == "# Lesson one\n"
    finally:
        c.run(["systemctl", "stop", "hw-it-gitd"], check=False)


def test_9_a_removed_course_stops_its_formgrader_and_keeps_its_files(hub):
    c = hub.c
    r = hw(hub, "course", "remove", C)
    assert "its files, gradebook and account are kept" in r.stdout, r.stdout
    assert c.run(["systemctl", "is-active", f"hardway-course-{C}"], check=False
                 ).stdout.strip() != "active"
    assert not c.path(f"/etc/systemd/system/hardway-course-{C}.service").exists()
    assert c.path(f"/var/lib/hardway/courses/{C}/course").is_dir()
    # its LMS course maps to nothing any more; the others are as they were
    listed = hw(hub, "course", "list").stdout
    assert C not in listed and A in listed and B in listed, listed
    r = user(hub, "prof").api("GET", f"/services/{C}/formgrader/api/assignments")
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert formgrader(user(hub, "prof"), A, "GET", "assignments").status_code == 200


def test_10_an_lti11_launch_joins_its_course_too(hub):
    """Canvas courses still on LTI 1.1: context_id and roles (comma-separated)."""
    mapping = ",".join([f"{LMS[A]}={A}", f"{LMS[B]}={B}", f"canvas-ctx-7={A}"])
    hw(hub, "config", "set", "auth.lti11.consumers", "canvas-key=canvas-secret",
       "courses.lti", mapping, "auth.type", "lti11")
    hw(hub, "config", "reload")
    r = post_launch(*signed_launch(hub, user_id="cy", extra={
        "context_id": "canvas-ctx-7",
        "roles": "urn:lti:instrole:ims/lis/Student,urn:lti:role:ims/lis/TeachingAssistant"}))
    assert r.status_code == 302, (r.status_code, r.text[:500])
    assert r.headers["Location"] == f"/services/{A}/formgrader"
    assert groups_of("cy") == [f"formgrade-{A}"]
    with Lti11Outcomes(LTI11_OUTCOMES_PORT, {"canvas-key": "canvas-secret"}) as lms:
        sourcedid = lms.give_out("dee", "ps1")
        r = post_launch(*signed_launch(hub, user_id="dee", extra={
            "context_id": "canvas-ctx-7", "roles": "Learner",
            # a graded link: Canvas's outcome service, dee's result in it, the assignment
            "lis_outcome_service_url": lms.url, "lis_result_sourcedid": sourcedid,
            "custom_nbgrader_assignment": "ps1"}))
        assert r.status_code == 302 and groups_of("dee") == [f"nbgrader-{A}"]
        # Basic Outcomes: dee's score, signed with the consumer's secret
        hand_in(hub, A, "jupyter-dee")
        r = grades(hub, A)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert re.search(r"^  ps1\tdee \(jupyter-dee\)\t2/2\tsent: the LTI 1.1 link",
                         r.stdout, re.M), r.stdout
        assert lms.results == {sourcedid: 1.0} and not lms.refusals, lms.refusals


def test_11_an_instructors_launch_from_a_new_lms_course_creates_it(hub):
    """courses.lti_create: the hub leaves a request, a path unit runs `hardway course
    requests` as root; the instructor's next launch lands in the new formgrader."""
    c = hub.c
    before = hw(hub, "course", "list").stdout
    hw(hub, "config", "set", "courses.lti_create", "true")
    hw(hub, "config", "reload")
    assert c.run(["systemctl", "is-active", "hardway-course-requests.path"]
                 ).stdout.strip() == "active"
    # a learner in an unmapped LMS course asks for nothing
    r = post_launch(*signed_launch(hub, user_id="lea", extra={
        "context_id": "canvas-ctx-phys", "context_label": "PHYS 210", "roles": "Learner"}))
    assert r.status_code == 302
    time.sleep(3)
    assert hw(hub, "course", "list").stdout == before
    t0 = time.monotonic()
    r = post_launch(*signed_launch(hub, user_id="zed", extra={
        "context_id": "canvas-ctx-phys", "context_label": "PHYS 210",
        "context_title": "Physics of Everyday Things", "roles": "Instructor"}))
    assert r.status_code == 302, (r.status_code, r.text[:300])
    # the job's last line, printed once its reload is done
    done = "course phys-210 created for the LMS course 'canvas-ctx-phys', asked by zed"
    deadline = time.monotonic() + 300
    while done not in (log := c.run(["journalctl", "-u", "hardway-course-requests",
                                     "--no-pager", "-o", "cat"]).stdout):
        assert time.monotonic() < deadline, log[-4000:]
        time.sleep(1)
    record("course-from-launch", {"figure": round(time.monotonic() - t0, 1), "unit": "s",
                                  "how": "instructor's LTI 1.1 launch to its course created "
                                         "(path unit, course add, hub restarted)"})
    assert re.search(r"^phys-210\tPhysics of Everyday Things\tformgrader active",
                     hw(hub, "course", "list").stdout, re.M)
    assert not list(c.path("/var/lib/hardway/hub/course-requests").iterdir())
    wait_for_hub(hub.base, 120)
    r = post_launch(*signed_launch(hub, user_id="zed", extra={
        "context_id": "canvas-ctx-phys", "roles": "Instructor"}))
    assert r.status_code == 302 and r.headers["Location"] == "/services/phys-210/formgrader"
    assert groups_of("zed") == ["formgrade-phys-210"]
    # the learner's next launch puts her in it too
    r = post_launch(*signed_launch(hub, user_id="lea", extra={
        "context_id": "canvas-ctx-phys", "roles": "Learner"}))
    assert r.status_code == 302 and groups_of("lea") == ["nbgrader-phys-210"]
