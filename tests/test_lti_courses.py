"""LTI launches into course groups (hub side; with a real platform peer on a booted host:
integration-tests/test_courses.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import types

import pytest
from conftest import write_config
from hardway_plugins.auth.lti_courses import LtiCourses, course_role

from hardway.errors import ConfigError
from hardway.ops.install import ensure_generated_secrets, render_now
from hardway.plugin.contract import Context
from hardway.plugin.manager import load_settings

M = "http://purl.imsglobal.org/vocab/lis/v2/membership"
INST = "http://purl.imsglobal.org/vocab/lis/v2/institution/person"


@pytest.mark.parametrize("roles, expected", [
    ([f"{M}#Instructor"], "grader"),
    ([f"{M}/Instructor#TeachingAssistant"], "grader"),
    ([f"{M}#ContentDeveloper", f"{M}#Learner"], "grader"),
    ([f"{M}#Learner"], "student"),
    # an institution's instructor taking a course is a learner in it
    ([f"{INST}#Instructor", f"{M}#Learner"], "student"),
    ([f"{INST}#Instructor"], None),
    ([f"{M}#Mentor"], None),
    # LTI 1.1 context roles, short and long
    (["Instructor"], "grader"),
    (["urn:lti:role:ims/lis/TeachingAssistant"], "grader"),
    (["urn:lti:instrole:ims/lis/Instructor", "Learner"], "student"),
    (["urn:lti:role:ims/lis/Learner/NonCreditLearner"], "student"),
    ([], None),
])
def test_only_roles_in_the_course_count(roles, expected):
    assert course_role(roles) == expected


def test_a_launch_puts_her_in_her_courses_group_and_only_adds():
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    for name in ("nbgrader-data-101", "formgrade-data-101", "nbgrader-stats-2"):
        db.add(orm.Group(name=name))
    ana = orm.User(name="ana")
    db.add(ana)
    db.commit()
    ana.groups.append(orm.Group.find(db, "nbgrader-stats-2"))
    db.commit()
    auth = LtiCourses(courses={"lms-ctx-1": "data-101", "lms-gone": "gone-1"})
    handler = types.SimpleNamespace(db=db, base_url="/")
    user = types.SimpleNamespace(name="ana", orm_user=ana)

    def join(context, roles):
        return asyncio.run(auth.join_course(handler, user, context, roles))

    assert join("lms-ctx-1", [f"{M}#Learner"]) == "/hub/user-redirect/lab"
    assert sorted(g.name for g in ana.groups) == ["nbgrader-data-101", "nbgrader-stats-2"]
    assert join("lms-ctx-1", [f"{M}#Learner"]) == "/hub/user-redirect/lab"  # idempotent
    assert len(ana.groups) == 2
    # a course not mapped, a course whose group is gone, no course role: nothing changes
    assert join("lms-other", [f"{M}#Instructor"]) is None
    assert join("lms-gone", [f"{M}#Instructor"]) is None
    assert join("lms-ctx-1", [f"{M}#Mentor"]) is None
    assert len(ana.groups) == 2
    # an instructor lands in the course's formgrader
    assert join("lms-ctx-1", [f"{M}#Instructor"]) == "/services/data-101/formgrader"
    assert "formgrade-data-101" in {g.name for g in ana.groups}


TWO = "courses:\n  list:\n    data-101: Data\n    stats-2: Stats\n"
LTI13 = ("auth:\n  type: lti13\n  lti13:\n    issuer: https://lms.example.edu\n"
         "    client_id: [tool-1]\n    authorize_url: https://lms.example.edu/auth\n"
         "    jwks_url: https://lms.example.edu/jwks\n")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="courses need Python >= 3.11")
def test_the_lms_courses_are_given_to_the_lti_authenticator(paths, registry):
    write_config(paths, TWO + "  lti:\n    lms-ctx-1: data-101\n" + LTI13)
    settings = load_settings(paths, registry)
    ensure_generated_secrets(registry, settings, paths)
    ctx = Context(paths, {"proxy_api_hash": "$2b$12$hash"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["LtiCourses"] == {"courses": {"lms-ctx-1": "data-101"}}
    assert config["JupyterHub"]["authenticator_class"].endswith("HardwayLTI13Authenticator")


def test_an_lms_course_mapped_to_no_course_is_refused(paths, registry):
    from hardway_plugins.courses import courses

    write_config(paths, TWO + "  lti:\n    lms-ctx-9: nope-1\n")
    with pytest.raises(ConfigError) as e:
        courses.check(load_settings(paths, registry))
    assert str(e.value).startswith("courses.lti: the LMS course 'lms-ctx-9' maps to 'nope-1'")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="courses need Python >= 3.11")
def test_without_an_lti_authenticator_nothing_of_it_is_rendered(paths, registry):
    write_config(paths, TWO + "  lti:\n    lms-ctx-1: data-101\n")
    settings = load_settings(paths, registry)
    ensure_generated_secrets(registry, settings, paths)
    ctx = Context(paths, {"proxy_api_hash": "$2b$12$hash"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    # a class the hub does not use is a config JupyterHub refuses
    assert "LtiCourses" not in json.loads(files[paths.hub_json].content)["config"]


def test_a_launch_from_no_course_goes_where_the_handler_would_send_it():
    """Both LTI handlers: upstream's get_next_url (the LTI 1.3 callback's takes no
    ``default``) decides unless the launch joined a course."""
    from hardway_plugins.auth.lti_checks import (
        HardwayLTI11LaunchHandler,
        HardwayLTI13CallbackHandler,
    )
    from hardway_plugins.auth.lti_courses import CourseLanding

    class Upstream13:
        def get_next_url(self, user=None):
            return "/hub/from-state"

    class Handler(CourseLanding, Upstream13):
        pass

    h = Handler()
    assert h.get_next_url(object()) == "/hub/from-state"
    h._course_landing = "/services/data-101/formgrader"
    assert h.get_next_url(object()) == "/services/data-101/formgrader"
    # the real handlers put the course first in their method order
    for cls in (HardwayLTI11LaunchHandler, HardwayLTI13CallbackHandler):
        assert cls.__mro__[1] is CourseLanding


def test_an_instructor_of_an_unmapped_lms_course_asks_for_one(tmp_path):
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    zed = orm.User(name="zed")
    db.add(zed)
    db.commit()
    spool = tmp_path / "course-requests"
    auth = LtiCourses(courses={}, create_requests_dir=str(spool))
    handler = types.SimpleNamespace(db=db, base_url="/")
    user = types.SimpleNamespace(name="zed", orm_user=zed)
    claims = {"https://purl.imsglobal.org/spec/lti/claim/context": {
        "id": "lms-new", "title": "Physics of Everyday Things", "label": "PHYS 210"}}

    def join(roles, launch=("lti13", claims)):
        return asyncio.run(auth.join_course(handler, user, "lms-new", roles, launch))

    assert join([f"{M}#Learner"]) is None
    assert not spool.exists()  # a learner asks for nothing
    assert join([f"{M}#Instructor"]) is None
    (request,) = spool.iterdir()
    got = json.loads(request.read_text())
    assert (got["context_id"], got["title"], got["label"], got["by"]) == (
        "lms-new", "Physics of Everyday Things", "PHYS 210", "zed")
    assert request.stat().st_mode & 0o777 == 0o600
    # launched again before it is made: still one request; nothing half-written in it
    assert join([f"{M}#Instructor"]) is None
    assert [p.name for p in spool.iterdir()] == [request.name]
    assert not auth.courses and not zed.groups


@pytest.mark.parametrize("label, title, taken, expected", [
    ("PHYS 210", "", set(), "phys-210"),
    ("", "Introduction to Data Science", set(), "introduction-to-data-sci"),
    ("101", "", set(), "c-101"),
    ("PHYS 210", "", {"phys-210"}, "phys-210-2"),
    ("", "", set(), None),  # from the context id's digest
    ("é", "!!", set(), None),
])
def test_a_course_id_is_made_from_the_lms_course(label, title, taken, expected):
    import re

    from hardway_plugins.courses import courses

    cid = courses.course_id_for(label, title, "ctx-1", taken)
    assert re.fullmatch(courses.COURSE_ID, cid) and cid not in taken
    if expected is None:
        assert cid.startswith("lms-")
    else:
        assert cid == expected
