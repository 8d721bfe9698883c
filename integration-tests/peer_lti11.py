"""An LTI 1.1 Basic Outcomes service (the LMS's side of grades for LTI 1.1 links, as Canvas
runs it), written for the tests and served on 127.0.0.1 in a thread of the test's process.

``POST /outcomes``: an ``replaceResultRequest`` (POX XML) signed with OAuth 1.0 in the
Authorization header. The signature is checked by oauthlib's own endpoint (consumer key,
HMAC-SHA1 over the request, timestamp, a nonce used once) and the ``oauth_body_hash`` by
this peer (oauthlib leaves it to the provider): a body changed after signing is refused.
A score outside 0.0-1.0 or a result id the LMS never gave out is refused with
``imsx_codeMajor`` failure, as the spec says. Accepted scores are in ``results``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.etree import ElementTree

from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

NS = "{http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0}"
RESPONSE = """<?xml version="1.0" encoding="UTF-8"?>
<imsx_POXEnvelopeResponse xmlns="http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0">
  <imsx_POXHeader><imsx_POXResponseHeaderInfo><imsx_version>V1.0</imsx_version>
    <imsx_messageIdentifier>{mid}</imsx_messageIdentifier>
    <imsx_statusInfo><imsx_codeMajor>{major}</imsx_codeMajor>
      <imsx_severity>status</imsx_severity><imsx_description>{why}</imsx_description>
      <imsx_operationRefIdentifier>replaceResult</imsx_operationRefIdentifier>
    </imsx_statusInfo></imsx_POXResponseHeaderInfo></imsx_POXHeader>
  <imsx_POXBody><replaceResultResponse/></imsx_POXBody>
</imsx_POXEnvelopeResponse>
"""


class _Validator(RequestValidator):
    def __init__(self, consumers: dict[str, str]) -> None:
        super().__init__()
        self.consumers = consumers
        self.seen: set[tuple[str, str, str]] = set()

    enforce_ssl = False
    dummy_client = "dummy-client-key-00000"

    @property
    def client_key_length(self) -> tuple[int, int]:
        return 3, 50

    @property
    def nonce_length(self) -> tuple[int, int]:
        return 10, 64

    def check_client_key(self, client_key: str) -> bool:
        return True

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key in self.consumers

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.consumers.get(client_key, "dummy-secret")

    def validate_timestamp_and_nonce(self, client_key: str, timestamp: str, nonce: str,
                                     request: Any, request_token: Any = None,
                                     access_token: Any = None) -> bool:
        if abs(time.time() - int(timestamp)) > 60 or (client_key, timestamp, nonce) in self.seen:
            return False
        self.seen.add((client_key, timestamp, nonce))
        return True


class Lti11Outcomes:
    def __init__(self, port: int, consumers: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/outcomes"
        self.validator = _Validator(consumers)
        self.endpoint = SignatureOnlyEndpoint(self.validator)
        self.sourcedids: set[str] = set()
        self.results: dict[str, float] = {}
        self.refusals: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def give_out(self, user: str, assignment: str) -> str:
        """A result id for ``user``'s column of ``assignment`` (what a launch carries)."""
        sourcedid = f"{assignment}:{user}:{len(self.sourcedids)}"
        self.sourcedids.add(sourcedid)
        return sourcedid

    def handle(self, headers: dict[str, str], body: str) -> tuple[str, str]:
        """(codeMajor, description) for one request."""
        with self._lock:
            ok, request = self.endpoint.validate_request(self.url, "POST", body, headers)
        if not ok:
            return "failure", "OAuth signature refused"
        params = dict(request.params)  # the oauth_* parameters of the header
        digest = base64.b64encode(hashlib.sha1(body.encode()).digest()).decode()
        if params.get("oauth_body_hash") != digest:
            return "failure", "oauth_body_hash does not match the body"
        root = ElementTree.fromstring(body)
        sourcedid = root.findtext(f".//{NS}sourcedId") or ""
        text = root.findtext(f".//{NS}textString") or ""
        if sourcedid not in self.sourcedids:
            return "failure", f"unknown sourcedId {sourcedid}"
        try:
            score = float(text)
        except ValueError:
            return "failure", f"score {text!r} is not a number"
        if not 0.0 <= score <= 1.0:
            return "failure", f"score {score} is not within 0.0-1.0"
        self.results[sourcedid] = score
        return "success", f"score {score} recorded"

    def start(self) -> Lti11Outcomes:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                major, why = peer.handle(dict(self.headers), body)
                if major != "success":
                    peer.refusals.append(why)
                data = RESPONSE.format(mid=int(time.time()), major=major, why=why).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Lti11Outcomes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
