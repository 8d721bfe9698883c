"""Grades back to the LMS: who each student is there, remembered at their launches, and
the scores sent to the LMS's gradebook.

* **LTI 1.3 (Assignment and Grade Services)**: a launch from a course carries the course's
  AGS endpoint (its line items URL and the scopes granted). hardway keeps it with the
  student's platform id (``sub``). To send, hardway signs a client assertion with the
  tool's own key (``secrets/lti13-tool-key.pem``; the LMS reads the public half at
  ``/hub/lti13/jwks``), gets a token from the platform's token endpoint
  (``auth.lti13.token_url``), finds or creates one line item per nbgrader assignment
  (its ``resourceId`` is the assignment's name) and posts each student's score. PyLTI1p3
  speaks the protocol; each run makes its own connector (no token outlives a run).
* **LTI 1.1 (Basic Outcomes)**: a launch carries ``lis_outcome_service_url`` and
  ``lis_result_sourcedid``, one gradebook column per LMS link; the link says which
  nbgrader assignment it is with the custom parameter ``nbgrader_assignment`` (Canvas:
  ``custom_nbgrader_assignment``). hardway posts a ``replaceResult`` (the score as a
  fraction of the maximum) signed with the consumer's key and secret (OAuth 1.0 with a
  body hash).

The records live in a root-only SQLite file in the hub's state directory
(:data:`GRADES_DB`), written by the hub at each launch and read by ``hardway course
grades`` (as root). A score is marked sent only when the LMS accepted it; anything else
stays to be sent by the next run, so a failure loses nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import private_sqlite

#: in paths.hub_dir (root-only): students' LMS identities and the grades sent
GRADES_DB = "lti-grades.sqlite"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
#: the LTI 1.1 custom parameter naming the nbgrader assignment of an LMS link
LTI11_ASSIGNMENT = "custom_nbgrader_assignment"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lti13_context (
    course TEXT NOT NULL, context TEXT NOT NULL, issuer TEXT NOT NULL,
    client_id TEXT NOT NULL, deployment TEXT NOT NULL, lineitems TEXT NOT NULL,
    scopes TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (course, context));
CREATE TABLE IF NOT EXISTS lti13_member (
    course TEXT NOT NULL, context TEXT NOT NULL, username TEXT NOT NULL,
    sub TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (course, context, username));
CREATE TABLE IF NOT EXISTS lti11_result (
    course TEXT NOT NULL, assignment TEXT NOT NULL, username TEXT NOT NULL,
    consumer_key TEXT NOT NULL, service_url TEXT NOT NULL, sourcedid TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (course, assignment, username, service_url));
CREATE TABLE IF NOT EXISTS sent (
    course TEXT NOT NULL, target TEXT NOT NULL, assignment TEXT NOT NULL,
    username TEXT NOT NULL, score REAL NOT NULL, max_score REAL NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (course, target, assignment, username));
"""


class GradeStoreError(Exception):
    """The records could not be read or written."""


class GradeStore:
    """Students' LMS identities per course, and the scores the LMS accepted."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                db = private_sqlite.connect(self.path, _SCHEMA, self.busy_timeout)
            except (OSError, sqlite3.Error) as e:
                raise GradeStoreError(f"cannot open {self.path}: {e}") from e
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise GradeStoreError(f"{self.path}: {e}") from e
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()

    # written by the hub at a launch

    def record_lti13(self, course: str, username: str, claims: dict[str, Any]) -> bool:
        """Keep who ``username`` is on the platform and the course's AGS endpoint; False
        when the launch carries no AGS endpoint (the LMS grants no grade service)."""
        context = claims.get("https://purl.imsglobal.org/spec/lti/claim/context") or {}
        ags = claims.get(AGS_CLAIM)
        sub = claims.get("sub")
        if not (isinstance(ags, dict) and isinstance(ags.get("lineitems"), str)
                and isinstance(sub, str) and isinstance(context, dict)):
            return False
        aud = claims.get("aud")
        client_id = claims.get("azp") or (aud[0] if isinstance(aud, list) and aud else aud)
        scopes = [s for s in ags.get("scope") or [] if isinstance(s, str)]
        now = time.time()
        ctx = str(context.get("id") or "")
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO lti13_context VALUES (?,?,?,?,?,?,?,?)",
                       (course, ctx, str(claims.get("iss") or ""), str(client_id or ""),
                        str(claims.get("https://purl.imsglobal.org/spec/lti/claim/"
                                       "deployment_id") or ""),
                        ags["lineitems"], json.dumps(scopes), now))
            db.execute("INSERT OR REPLACE INTO lti13_member VALUES (?,?,?,?,?)",
                       (course, ctx, username, sub, now))
        return True

    def record_lti11(self, course: str, username: str, args: dict[str, Any]) -> bool:
        """Keep the outcome service and result id of an LTI 1.1 launch; False when it
        has none (the link is not graded) or names no nbgrader assignment."""
        url, sourcedid = args.get("lis_outcome_service_url"), args.get("lis_result_sourcedid")
        assignment = args.get(LTI11_ASSIGNMENT)
        if not (url and sourcedid and assignment):
            return False
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO lti11_result VALUES (?,?,?,?,?,?,?)",
                       (course, str(assignment), username, str(args.get("oauth_consumer_key")
                                                                or ""),
                        str(url), str(sourcedid), time.time()))
        return True

    # read and written by `hardway course grades`

    def lti13_targets(self, course: str) -> list[Lti13Target]:
        with self._db() as db:
            contexts = db.execute(
                "SELECT context, issuer, client_id, deployment, lineitems, scopes FROM "
                "lti13_context WHERE course = ? ORDER BY context", (course,)).fetchall()
            out = []
            for ctx, iss, client_id, deployment, lineitems, scopes in contexts:
                members = dict(db.execute(
                    "SELECT username, sub FROM lti13_member WHERE course = ? AND context = ?",
                    (course, ctx)).fetchall())
                out.append(Lti13Target(ctx, iss, client_id, deployment, lineitems,
                                       json.loads(scopes), members))
        return out

    def lti11_results(self, course: str) -> list[Lti11Result]:
        with self._db() as db:
            rows = db.execute(
                "SELECT assignment, username, consumer_key, service_url, sourcedid FROM "
                "lti11_result WHERE course = ? ORDER BY assignment, username",
                (course,)).fetchall()
        return [Lti11Result(*row) for row in rows]

    def sent_scores(self, course: str) -> dict[tuple[str, str, str], tuple[float, float]]:
        """(target, assignment, username) -> (score, max_score) the LMS accepted last."""
        with self._db() as db:
            rows = db.execute("SELECT target, assignment, username, score, max_score FROM "
                              "sent WHERE course = ?", (course,)).fetchall()
        return {(t, a, u): (s, m) for t, a, u, s, m in rows}

    def mark_sent(self, course: str, target: str, assignment: str, username: str,
                  score: float, max_score: float) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO sent VALUES (?,?,?,?,?,?,?)",
                       (course, target, assignment, username, score, max_score, time.time()))


@dataclass
class Lti13Target:
    """An LMS course (context) launched from with LTI 1.3, and its students there."""

    context: str
    issuer: str
    client_id: str
    deployment: str
    lineitems: str
    scopes: list[str]
    members: dict[str, str]  # hub username -> platform user id (sub)

    @property
    def name(self) -> str:
        return f"lti13:{self.issuer}:{self.context}"


@dataclass
class Lti11Result:
    assignment: str
    username: str
    consumer_key: str
    service_url: str
    sourcedid: str


@dataclass
class Score:
    """One student's autograded submission, from the course's gradebook."""

    assignment: str
    student: str  # nbgrader's student id (the unix account)
    username: str | None  # the hub user, when known
    score: float
    max_score: float
    needs_manual_grade: bool = False


@dataclass
class Line:
    """What happened to one score."""

    score: Score
    status: str  # sent | unchanged | unknown | failed | refused
    detail: str = ""


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    #: run-wide failures (token refused, platform unreachable): one line each
    errors: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)

    @property
    def ok(self) -> bool:
        return not self.errors and not any(
            line.status in ("failed", "refused") for line in self.lines)


class LmsError(Exception):
    """The whole run could not talk to the LMS (one clear line for the report)."""


class _TimeoutSession:
    """A requests session whose every request has a timeout (PyLTI1p3 sets none)."""

    def __new__(cls, timeout: float) -> Any:
        import requests

        class Session(requests.Session):
            def request(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("timeout", timeout)
                return super().request(*args, **kwargs)

        s = Session()
        s.headers["User-Agent"] = "hardway (LTI grades)"
        return s


def _http_error(e: Exception) -> str:
    response = getattr(e, "response", None)
    if response is None and e.args and hasattr(e.args[0], "status_code"):
        response = e.args[0]  # PyLTI1p3's LtiServiceException(response)
    if response is not None:
        body = " ".join((getattr(response, "text", "") or "").split())[:200]
        return f"HTTP {response.status_code}{': ' + body if body else ''}"
    return str(e) or type(e).__name__


def _unreachable(url: str, e: Exception) -> LmsError:
    reason = e.__class__.__name__
    inner = getattr(e, "args", None)
    if inner:
        text = str(inner[0])
        for marker in ("Connection refused", "timed out", "Name or service not known",
                       "No route to host", "certificate verify failed"):
            if marker in text:
                reason = marker
                break
    return LmsError(f"the LMS could not be reached at {url} ({reason})")


def already_sent(sent: dict[tuple[str, str, str], tuple[float, float]], target: str,
                 s: Score) -> bool:
    """The LMS ``target`` accepted this very score of this student before."""
    return sent.get((target, s.assignment, s.username or "")) == (s.score, s.max_score)


def send_lti13(target: Lti13Target, scores: list[Score], *, token_url: str,
               private_key: str, sent: dict[tuple[str, str, str], tuple[float, float]],
               timeout: float = 20.0) -> tuple[list[Line], list[Line]]:
    """Send ``scores`` of students launched from ``target`` (the others are the caller's).
    Returns (lines for those students, lines already settled); raises LmsError when the
    platform cannot be used at all (nothing is marked sent then)."""
    import requests
    from pylti1p3.assignments_grades import AssignmentsGradesService
    from pylti1p3.exception import LtiException, LtiServiceException
    from pylti1p3.grade import Grade
    from pylti1p3.lineitem import LineItem
    from pylti1p3.registration import Registration
    from pylti1p3.service_connector import ServiceConnector

    mine = [s for s in scores if s.username in target.members]
    todo, lines = [], []
    for s in mine:
        if already_sent(sent, target.name, s):
            lines.append(Line(s, "unchanged", "sent before"))
        else:
            todo.append(s)
    if not todo:
        return lines, []
    if SCORE_SCOPE not in target.scopes:
        raise LmsError(f"the LMS course {target.context} grants no score scope to this "
                       f"tool (its launches' AGS claim lists: {', '.join(target.scopes)})")
    if not token_url:
        raise LmsError("auth.lti13.token_url is not set: the platform's token endpoint "
                       "is needed to send grades (hardway config set auth.lti13.token_url "
                       "URL)")
    public = _public_pem(private_key)
    registration = (Registration().set_issuer(target.issuer)
                    .set_client_id(target.client_id).set_auth_token_url(token_url)
                    .set_tool_private_key(private_key).set_tool_public_key(public))
    connector = ServiceConnector(registration, requests_session=_TimeoutSession(timeout))
    ags = AssignmentsGradesService(connector, {"scope": target.scopes,  # type: ignore[typeddict-item]
                                               "lineitems": target.lineitems})
    try:
        connector.get_access_token(target.scopes)
    except requests.RequestException as e:
        raise _unreachable(token_url, e) from None
    except LtiServiceException as e:
        raise LmsError(f"the LMS refused this tool's token request at {token_url} "
                       f"({_http_error(e)}): is the tool's key (its JWKS URL, see "
                       "`hardway lti`) registered and the tool enabled?") from None
    items: dict[str, Any] = {}
    sent_lines: list[Line] = []
    for s in sorted(todo, key=lambda s: (s.assignment, s.student)):
        try:
            if s.assignment not in items:
                wanted = (LineItem().set_label(s.assignment).set_resource_id(s.assignment)
                          .set_tag("nbgrader").set_score_maximum(s.max_score))
                items[s.assignment] = ags.find_or_create_lineitem(wanted,
                                                                  find_by="resource_id")
            grade = (Grade().set_score_given(s.score).set_score_maximum(s.max_score)
                     .set_timestamp(time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
                     .set_activity_progress("Completed")
                     .set_grading_progress("PendingManual" if s.needs_manual_grade
                                           else "FullyGraded")
                     .set_user_id(target.members[s.username or ""]))
            ags.put_grade(grade, items[s.assignment])
        except requests.RequestException as e:
            raise _unreachable(target.lineitems, e) from None
        except LtiServiceException as e:
            status = getattr(e.args[0], "status_code", 0) if e.args else 0
            if status == 401:  # the token was revoked meanwhile: nothing more will pass
                raise LmsError(f"the LMS no longer accepts this tool's token "
                               f"({_http_error(e)})") from None
            sent_lines.append(Line(s, "refused", f"the LMS refused it: {_http_error(e)}"))
            continue
        except LtiException as e:
            sent_lines.append(Line(s, "refused", str(e)))
            continue
        sent_lines.append(Line(s, "sent", f"line item {s.assignment!r} of the LMS course "
                                          f"{target.context}"))
    return lines, sent_lines


def _public_pem(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def tool_jwks(private_pem: bytes | None) -> dict[str, Any]:
    """The tool's public key set (what the LMS reads at /hub/lti13/jwks)."""
    if not private_pem:
        return {"keys": []}
    from jwcrypto.jwk import JWK

    key = JWK.from_pem(private_pem)
    public = json.loads(key.export_public())
    public.update({"alg": "RS256", "use": "sig", "kid": key.thumbprint()})
    return {"keys": [public]}


REPLACE_RESULT = """<?xml version="1.0" encoding="UTF-8"?>
<imsx_POXEnvelopeRequest xmlns="http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0">
  <imsx_POXHeader><imsx_POXRequestHeaderInfo>
    <imsx_version>V1.0</imsx_version>
    <imsx_messageIdentifier>{message_id}</imsx_messageIdentifier>
  </imsx_POXRequestHeaderInfo></imsx_POXHeader>
  <imsx_POXBody><replaceResultRequest><resultRecord>
    <sourcedGUID><sourcedId>{sourcedid}</sourcedId></sourcedGUID>
    <result><resultScore><language>en</language><textString>{score}</textString></resultScore></result>
  </resultRecord></replaceResultRequest></imsx_POXBody>
</imsx_POXEnvelopeRequest>
"""
POX_NS = "{http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0}"


def replace_result_body(sourcedid: str, fraction: float, message_id: str) -> str:
    from xml.sax.saxutils import escape

    return REPLACE_RESULT.format(message_id=escape(message_id), sourcedid=escape(sourcedid),
                                 score=f"{min(max(fraction, 0.0), 1.0):.4f}")


def pox_outcome(body: str) -> tuple[str, str]:
    """(imsx_codeMajor, imsx_description) of a Basic Outcomes response."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "failure", f"not an outcomes response: {' '.join(body.split())[:200]!r}"
    major = root.find(f".//{POX_NS}imsx_codeMajor")
    description = root.find(f".//{POX_NS}imsx_description")
    return ((major.text or "").strip() if major is not None else "failure",
            (description.text or "").strip() if description is not None else "")


def send_lti11(result: Lti11Result, score: Score, secret: str,
               timeout: float = 20.0) -> Line:
    """One replaceResult, signed with the consumer's secret (OAuth 1.0, body hash)."""
    import secrets

    import requests
    from oauthlib.oauth1 import Client

    body = replace_result_body(result.sourcedid, score.score / score.max_score
                               if score.max_score else 0.0, secrets.token_hex(8))
    client = Client(result.consumer_key, client_secret=secret)
    uri, headers, signed = client.sign(result.service_url, http_method="POST", body=body,
                                       headers={"Content-Type": "application/xml"})
    try:
        r = requests.post(uri, data=signed, headers=headers, timeout=timeout)
    except requests.RequestException as e:
        raise _unreachable(result.service_url, e) from None
    major, description = pox_outcome(r.text) if r.ok else ("failure", _http_error(
        requests.HTTPError(response=r)))
    if major != "success":
        return Line(score, "refused", f"the LMS refused it: {description or major}")
    return Line(score, "sent", f"the LTI 1.1 link of {score.assignment!r} "
                               f"({result.consumer_key})")


def send_all(store: GradeStore, course: str, scores: Iterable[Score], *, token_url: str,
             private_key: str | None, lti11_secrets: dict[str, str],
             timeout: float = 20.0) -> Report:
    """Send every score not yet accepted by the LMS, to every LMS course its student was
    launched from; mark each one the LMS accepted. Never raises for the LMS's answers:
    they are the report's."""
    scores = list(scores)
    report = Report()
    sent = store.sent_scores(course)
    reached: set[tuple[str, str]] = set()  # (assignment, student) with an LMS identity

    for target in store.lti13_targets(course):
        mine = [s for s in scores if s.username in target.members]
        reached.update((s.assignment, s.student) for s in mine)
        if not mine:
            continue
        if not private_key:
            report.errors.append("the tool's key (lti13-tool-key.pem) is missing: run "
                                 "`hardway config reload` to generate it")
            report.lines += [Line(s, "failed", "not sent") for s in mine]
            continue
        try:
            settled, lines = send_lti13(target, mine, token_url=token_url,
                                        private_key=private_key, sent=sent, timeout=timeout)
        except LmsError as e:
            report.errors.append(str(e))
            report.lines += [Line(s, "failed", "not sent: kept for the next run")
                             for s in mine if not already_sent(sent, target.name, s)]
            continue
        report.lines += settled
        for line in lines:
            if line.status == "sent":
                s = line.score
                store.mark_sent(course, target.name, s.assignment, s.username or "", s.score,
                                s.max_score)
        report.lines += lines

    for result in store.lti11_results(course):
        for s in scores:
            if s.username != result.username or s.assignment != result.assignment:
                continue
            reached.add((s.assignment, s.student))
            name = f"lti11:{result.service_url}"
            if already_sent(sent, name, s):
                report.lines.append(Line(s, "unchanged", "sent before"))
                continue
            secret = lti11_secrets.get(result.consumer_key)
            if secret is None:
                report.lines.append(Line(s, "failed", f"the consumer key "
                                         f"{result.consumer_key!r} is no longer in "
                                         "auth.lti11.consumers"))
                continue
            try:
                line = send_lti11(result, s, secret, timeout)
            except LmsError as e:
                report.errors.append(str(e))
                report.lines.append(Line(s, "failed", "not sent: kept for the next run"))
                continue
            if line.status == "sent":
                store.mark_sent(course, name, s.assignment, s.username, s.score, s.max_score)
            report.lines.append(line)

    for s in scores:
        if (s.assignment, s.student) not in reached:
            report.lines.append(Line(s, "unknown", "no LMS identity: never launched from "
                                                   "an LMS course mapped to this one"))
    report.errors = list(dict.fromkeys(report.errors))
    return report
