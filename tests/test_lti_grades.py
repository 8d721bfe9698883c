"""Grades back to the LMS, the sending side, against the test platform peers run in this
process (integration-tests/peer_lti13.py: lti1p3platform with the AGS token endpoint,
line items and scores; peer_lti11.py: Basic Outcomes checked with oauthlib). The hub's
part (launches recording identities, /hub/lti13/jwks) and `hardway course grades` run on
a booted host in integration-tests/test_courses.py."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hardway_plugins.auth import lti_grades as g

from hardway.ops.install import private_key_pem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration-tests"))
from peer_lti11 import Lti11Outcomes
from peer_lti13 import Lti13Platform

CTX = "lms-ctx-data-101"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ToolJwks:
    """The hub's /hub/lti13/jwks, serving the tool's public key."""

    def __init__(self, key: str) -> None:
        jwks = json.dumps(g.tool_jwks(key.encode())).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return None

            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/hub/lti13/jwks" else 404)
                self.send_header("Content-Length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tool_key() -> str:
    return private_key_pem()


@pytest.fixture
def lms(tool_key):
    jwks = ToolJwks(tool_key)
    platform = Lti13Platform(free_port(), jwks.base, "tool-1").start()
    yield platform
    platform.stop()
    jwks.close()


def launched(platform: Lti13Platform, store: g.GradeStore, name: str) -> str:
    """``name`` launched from the LMS course: the claims the hub keeps (as its callback
    does) and the platform's membership."""
    user = platform.user(name)
    platform.ags.members.add((CTX, user.sub))
    claims = {
        "iss": platform.issuer, "aud": platform.client_id, "sub": user.sub,
        "https://purl.imsglobal.org/spec/lti/claim/context": {"id": CTX},
        "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "deployment-1",
        g.AGS_CLAIM: {"scope": sorted(g_scopes()), "lineitems": f"{platform.base}/lineitems/"
                                                                 f"{CTX}"},
    }
    assert store.record_lti13("data-101", name, claims)
    return user.sub


def g_scopes() -> set[str]:
    return {g.LINEITEM_SCOPE, g.SCORE_SCOPE,
            "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"}


def score(name: str | None, given: float, assignment: str = "ps1") -> g.Score:
    return g.Score(assignment, f"jupyter-{name or 'dan'}", name, given, 2.0)


def send(store, platform, tool_key, scores, **kw) -> g.Report:
    return g.send_all(store, "data-101", scores, token_url=getattr(platform, "token_url", ""),
                      private_key=tool_key, lti11_secrets=kw.pop("secrets", {}),
                      timeout=5, **kw)


def test_scores_reach_the_line_item_of_their_assignment(tmp_path, lms, tool_key):
    store = g.GradeStore(tmp_path / "grades.sqlite")
    ana = launched(lms, store, "ana")
    report = send(store, lms, tool_key, [score("ana", 1.5), score(None, 2.0)])
    assert report.ok, report
    assert lms.ags.gradebook(CTX, "ps1") == {ana: 0.75}
    item = lms.ags.lineitems[CTX][0]
    assert (item["resourceId"], item["scoreMaximum"]) == ("ps1", 2.0)
    statuses = {line.score.student: (line.status, line.detail) for line in report.lines}
    assert statuses["jupyter-ana"][0] == "sent"
    # a student who never launched from the LMS is reported, not sent
    assert statuses["jupyter-dan"] == ("unknown", "no LMS identity: never launched from an "
                                                  "LMS course mapped to this one")
    # the next run finds the line item (no second one) and sends only what changed
    posts = lms.ags.score_posts
    again = send(store, lms, tool_key, [score("ana", 1.5)])
    assert [line.status for line in again.lines] == ["unchanged"]
    assert lms.ags.score_posts == posts
    changed = send(store, lms, tool_key, [score("ana", 2.0)])
    assert [line.status for line in changed.lines] == ["sent"]
    assert lms.ags.gradebook(CTX, "ps1") == {ana: 1.0} and len(lms.ags.lineitems[CTX]) == 1
    # the store is root's alone
    assert (tmp_path / "grades.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_revoked_tool_or_an_unreachable_lms_loses_nothing(tmp_path, lms, tool_key):
    store = g.GradeStore(tmp_path / "grades.sqlite")
    ana = launched(lms, store, "ana")
    lms.ags.revoke()
    report = send(store, lms, tool_key, [score("ana", 2.0)])
    assert not report.ok
    assert len(report.errors) == 1 and "refused this tool's token request" in \
        report.errors[0] and "HTTP 401" in report.errors[0], report.errors
    assert lms.ags.token_requests[-1] == (401, "the tool's key was disabled")
    assert [line.status for line in report.lines] == ["failed"]
    lms.ags.restore()
    lms.stop()
    report = send(store, lms, tool_key, [score("ana", 2.0)])
    assert report.errors == [f"the LMS could not be reached at {lms.token_url} "
                             "(Connection refused)"]
    lms.start()
    report = send(store, lms, tool_key, [score("ana", 2.0)])
    assert report.ok and lms.ags.gradebook(CTX, "ps1") == {ana: 1.0}


def test_a_forged_tool_key_gets_no_token(tmp_path, lms):
    """The platform checks the client assertion against the tool's registered key."""
    store = g.GradeStore(tmp_path / "grades.sqlite")
    launched(lms, store, "ana")
    report = send(store, lms, private_key_pem(), [score("ana", 2.0)])
    assert "HTTP 401" in report.errors[0]
    assert lms.ags.token_requests[-1] == (401, "no tool key with that kid")
    assert CTX not in lms.ags.scores and not lms.ags.lineitems.get(CTX)


def test_lti11_outcomes_are_signed_and_kept_until_accepted(tmp_path):
    store = g.GradeStore(tmp_path / "grades.sqlite")
    port = free_port()
    with Lti11Outcomes(port, {"canvas-key": "canvas-secret"}) as lms:
        sourcedid = lms.give_out("dee", "ps1")
        args = {"lis_outcome_service_url": lms.url, "lis_result_sourcedid": sourcedid,
                "custom_nbgrader_assignment": "ps1", "oauth_consumer_key": "canvas-key"}
        assert store.record_lti11("data-101", "dee", args)
        # a link that names no assignment is not kept (nothing to map it to)
        assert not store.record_lti11("data-101", "eve", {**args,
                                                          "custom_nbgrader_assignment": ""})
        wrong = send(store, lms, None, [score("dee", 1.0)],
                     secrets={"canvas-key": "not-the-secret"})
        assert [(line.status, line.detail) for line in wrong.lines] == [
            ("refused", "the LMS refused it: OAuth signature refused")]
        ok = send(store, lms, None, [score("dee", 1.0), score("eve", 2.0)],
                  secrets={"canvas-key": "canvas-secret"})
        assert lms.results == {sourcedid: 0.5}
        assert sorted(line.status for line in ok.lines) == ["sent", "unknown"]
        again = send(store, lms, None, [score("dee", 1.0)],
                     secrets={"canvas-key": "canvas-secret"})
        assert [line.status for line in again.lines] == ["unchanged"]


def test_the_jwks_holds_only_the_public_key(tool_key):
    jwks = g.tool_jwks(tool_key.encode())
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    # the kid PyLTI1p3 puts in the header of the tool's token requests
    from pylti1p3.registration import Registration

    signing = Registration().set_tool_private_key(tool_key).set_tool_public_key(
        g._public_pem(tool_key))
    assert "d" not in key and "p" not in key and key["kid"] == signing.get_kid()
    assert g.tool_jwks(None) == {"keys": []}
