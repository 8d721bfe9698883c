"""LMS courses into hub groups: an LTI launch's context (the LMS course) and roles put the
user in that course's group, and send them where they work (runs in the hub).

Which LMS course is which hardway course is configured (``LtiCourses.courses``, from the
setting ``courses.lti``); the groups are the courses plugin's: ``formgrade-ID`` for
instructors, teaching assistants and content developers, ``nbgrader-ID`` for learners.
Only roles *in the course* count (LTI 1.3 membership roles, LTI 1.1 context roles): an
institution-wide "Instructor" taking a course as a learner is a learner there.

A launch only ever adds a membership: an LMS says who launched, not who left (dropping
a student is the admin page's, or the hub API's).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from traitlets import Dict, Unicode
from traitlets.config import LoggingConfigurable

from .lti_grades import GradeStore, GradeStoreError

CONTEXT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/context"
ROLES_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/roles"
#: LTI 1.3 roles in a course (context), and the LTI 1.1 long form of context roles
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
LTI11_CONTEXT_ROLE = "urn:lti:role:ims/lis/"
GRADERS = {"Instructor", "TeachingAssistant", "ContentDeveloper"}
STUDENTS = {"Learner", "Student"}


def course_role(roles: Iterable[str]) -> str | None:
    """"grader", "student" or None, from a launch's roles in its course. Institution
    and system roles do not count; a grader role wins over a learner one."""
    names = set()
    for role in roles:
        if not isinstance(role, str):
            continue
        role = role.strip()
        # ...membership#Instructor, ...membership/Instructor#TeachingAssistant
        if role.startswith(MEMBERSHIP):
            names.add(role.rsplit("#", 1)[-1])
            names.add(role[len(MEMBERSHIP):].strip("/#").split("#")[0])
        elif role.startswith(LTI11_CONTEXT_ROLE):  # urn:lti:role:ims/lis/Instructor/...
            names.update(role[len(LTI11_CONTEXT_ROLE):].split("/"))
        elif ":" not in role and "/" not in role:  # short context role names
            names.add(role)
    if names & GRADERS:
        return "grader"
    if names & STUDENTS:
        return "student"
    return None


class LtiCourses(LoggingConfigurable):
    """Mixed into hardway's LTI authenticators."""

    courses = Dict(
        {}, config=True,
        help="LMS course (the launch's context id) -> hardway course id (courses.lti).")

    grades_db_path = Unicode(
        "", config=True,
        help="SQLite file where launches leave students' LMS identities for grades "
             "(hardway: /var/lib/hardway/hub/lti-grades.sqlite); empty: none kept.")

    def remember_for_grades(self, cid: str, username: str, version: str,
                            data: dict[str, Any]) -> None:
        """Keep who ``username`` is in the LMS course (its grade service, their id there)
        for ``hardway course grades``. A failure is logged: the login goes on."""
        if not self.grades_db_path:
            return
        store = GradeStore(self.grades_db_path)
        try:
            kept = (store.record_lti13(cid, username, data) if version == "lti13"
                    else store.record_lti11(cid, username, data))
        except GradeStoreError as e:
            self.log.error("LTI launch of %s in course %s: their LMS identity could not be "
                           "kept for grades: %s", username, cid, e)
            return
        if not kept:
            self.log.info("LTI launch of %s in course %s carries no grade service (%s)",
                          username, cid, "no AGS endpoint claim" if version == "lti13" else
                          "no lis_outcome_service_url, lis_result_sourcedid or "
                          "custom_nbgrader_assignment")

    create_requests_dir = Unicode(
        "", config=True,
        help="Where an instructor's launch from an unmapped LMS course leaves a request "
             "for a course (courses.lti_create; root-only, read by `hardway course "
             "requests`); empty: no course is created from a launch.")

    def request_course(self, context_id: str, username: str,
                       launch: tuple[str, dict[str, Any]] | None) -> None:
        """Leave a request for a course for this LMS course (one file per LMS course,
        written whole, so the job that reads it never sees half of one)."""
        import hashlib
        import json
        import os
        import time

        title = label = ""
        if launch is not None:
            version, data = launch
            if version == "lti13":
                context = data.get(CONTEXT_CLAIM) or {}
                if isinstance(context, dict):
                    title, label = str(context.get("title") or ""), str(
                        context.get("label") or "")
            else:
                title = str(data.get("context_title") or "")
                label = str(data.get("context_label") or "")
        spool = self.create_requests_dir
        name = hashlib.sha256(context_id.encode()).hexdigest()[:24] + ".json"
        body = json.dumps({"context_id": context_id, "title": title[:200],
                           "label": label[:100], "by": username, "at": time.time()})
        try:
            os.makedirs(spool, mode=0o700, exist_ok=True)
            # written beside the directory, then moved in: what is in it is whole
            os.makedirs(spool + ".tmp", mode=0o700, exist_ok=True)
            tmp = os.path.join(spool + ".tmp", name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(spool, name))
        except OSError as e:
            self.log.error("LTI launch of %s: the request for a course for the LMS course "
                           "%r could not be left in %s: %s", username, context_id, spool, e)
            return
        self.log.info("LTI launch of %s, instructor in the unmapped LMS course %r: asked "
                      "for a course for it (courses.lti_create)", username, context_id)

    def course_landing(self, base_url: str, cid: str, role: str) -> str:
        if role == "grader":
            return f"{base_url}services/{cid}/formgrader"
        return f"{base_url}hub/user-redirect/lab"

    async def join_course(self, handler: Any, user: Any, context_id: Any,
                          roles: Iterable[str],
                          launch: tuple[str, dict[str, Any]] | None = None) -> str | None:
        """Put ``user`` in the group of the course ``context_id`` is mapped to, as its
        roles say; return where they should land (None: no course, nothing changed)."""
        from jupyterhub import orm

        if not isinstance(context_id, str) or not context_id:
            return None
        role = course_role(roles)
        if context_id not in self.courses:
            # what an admin mapping an LMS course looks for in the journal
            self.log.info("LTI launch of %s from the LMS course %r (%s): mapped to no "
                          "course here (courses.lti)", user.name, context_id,
                          ", ".join(map(str, roles)))
            if role == "grader" and self.create_requests_dir:
                self.request_course(context_id, user.name, launch)
            return None
        cid = self.courses[context_id]
        if role is None:
            self.log.info("LTI launch of %s in course %s with no course role (%s): no "
                          "course group", user.name, cid, ", ".join(map(str, roles)))
            return None
        if launch is not None:
            self.remember_for_grades(cid, user.name, *launch)
        name = f"{'formgrade' if role == 'grader' else 'nbgrader'}-{cid}"
        group = orm.Group.find(handler.db, name)
        if group is None:
            self.log.warning("LTI launch of %s in course %s: the hub has no group %s "
                             "(was the course removed?)", user.name, cid, name)
            return None
        if group not in user.orm_user.groups:
            user.orm_user.groups.append(group)
            handler.db.commit()
            self.log.info("LTI launch: %s joined %s (LMS course %s)", user.name, name,
                          context_id)
        return self.course_landing(handler.base_url, cid, role)


class CourseLanding:
    """Mixed into the LTI launch handlers: after the login, the course's group and the
    landing page."""

    _course_landing: str | None = None

    async def join_course_of_launch(self, user: Any, context_id: Any, roles: Iterable[str],
                                    launch: tuple[str, dict[str, Any]] | None = None
                                    ) -> None:
        auth = self.authenticator  # type: ignore[attr-defined]
        if user is not None and isinstance(auth, LtiCourses):
            self._course_landing = await auth.join_course(self, user, context_id, roles,
                                                          launch)

    def get_next_url(self, user: Any = None, default: Any = None) -> str:
        if self._course_landing:
            return self._course_landing
        # the LTI 1.3 callback's own get_next_url takes no ``default``
        if default is None:
            return super().get_next_url(user)  # type: ignore[misc]
        return super().get_next_url(user, default)  # type: ignore[misc]
