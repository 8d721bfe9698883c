"""A real LTI 1.3 platform (an LMS, as Canvas or Moodle would be) for the lti13 tests, built
on PyPI's lti1p3platform and served on 127.0.0.1 only, in a thread of the test's process.

It plays the platform's three parts of a launch:

* ``GET /launch?user=NAME``: the LMS page a student clicks; an auto-submitting form POSTs
  the OIDC login initiation (iss, login_hint, target_link_uri, lti_message_hint, client_id,
  lti_deployment_id) to the hub's ``/hub/lti13/oauth_login``;
* ``GET|POST /authorize``: the platform's OIDC authorization endpoint, where the hub sends
  the browser; it checks client_id, redirect_uri (lti1p3platform does not), response_type,
  response_mode, scope, login_hint and lti_message_hint, then answers an auto-submitting
  form that POSTs an RS256-signed id_token and the hub's state to the hub's callback;
* ``GET /jwks``: the platform's public key, where the hub checks id_token signatures.

Forgeries, for the refusal tests: set ``platform.next_forgery`` to one of ``FORGERIES``
before a launch; it applies to the next id_token minted and is then reset.
``platform.last_form_post`` is the exact form the last launch POSTed to the hub (action,
id_token, state), so a test can replay it. ``platform.next_deployment_id`` makes the next
launch come from another deployment of the tool on this platform (another course or account
that installed it): a genuine id_token, signed with the platform's own key, whose
deployment_id claim is that one.

``launch(platform, hub_base, user)`` does what a browser does, with requests alone.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request, TRequest

ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
CONTEXT_OFFERING = "http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"

FORGERIES = (
    "other_key",           # signed by a key the JWKS does not hold (its own kid)
    "other_key_same_kid",  # signed by another key, header claims the platform's kid
    "wrong_aud",           # aud/azp name another tool's client_id
    "wrong_iss",           # iss is another platform
    "expired",             # exp in the past (iat still within the hub's max_age)
    "old_iat",             # exp in the future, but issued 15 minutes ago
    "reused_nonce",        # carries the nonce of the previous launch, not this one's
    "alg_none",            # unsigned (alg "none")
)


class PlatformRefusal(Exception):
    """The platform refuses an authorization request, as an LMS would (HTTP 400)."""


@dataclass
class LtiUser:
    """A person on the platform, with what an LTI 1.3 launch says about them."""

    name: str
    email: str
    sub: str
    roles: list[str]
    given_name: str = ""
    custom: dict[str, str] = field(default_factory=dict)


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def auto_submit_form(action: str, fields: dict[str, str], title: str = "LTI launch") -> str:
    """An HTML page whose form POSTs ``fields`` to ``action`` as soon as it loads."""
    inputs = "\n".join(
        f'    <input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
  <form id="lti" method="post" action="{html.escape(action)}">
{inputs}
    <noscript><button type="submit">Continue</button></noscript>
  </form>
  <script>document.getElementById("lti").submit();</script>
</body></html>
"""


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.method = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action, self.method = a.get("action", ""), a.get("method", "get").lower()
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")


def parse_form(page: str) -> tuple[str, str, dict[str, str]]:
    """(action, method, fields) of the first form in an HTML page."""
    p = _FormParser()
    p.feed(page)
    if not p.action:
        raise ValueError(f"no form in page: {page[:200]!r}")
    return p.action, p.method, p.fields


# --- lti1p3platform's abstract classes, made concrete --------------------------------------

class _Conf(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs: Any) -> None:
        self._registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        assert self._registration is not None
        return self._registration


class _Request(Request):
    def build_metadata(self, request: Any) -> TRequest:
        method, args = request
        return {"method": method, "get_data": args if method == "GET" else {},
                "form_data": args if method == "POST" else {}, "headers": {},
                "content_type": None, "path": "/authorize", "json": None}


class _OIDCLogin(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class _Launch(LTIAdvantageMessageLaunchAbstract):
    user: LtiUser
    #: the platform's line items URL of the launch's course (AGS), or None
    lineitems: str | None = None
    resource_link_id = "resource-link-1"
    #: the course (LTI context) launched from: id, title, label
    context = ("course-101", "Introduction to Data Science", "DATA101")

    def prepare_launch(self, preflight_response: dict[str, Any], **kwargs: Any) -> None:
        u = self.user
        self.set_user_data(u.sub, u.roles, full_name=u.name, email_address=u.email,
                           preferred_username=u.name)
        if u.given_name:
            self.set_extra_claims({"given_name": u.given_name})
        self.set_resource_link_claim(self.resource_link_id, title="Notebook assignment")
        cid, title, label = self.context
        self.set_launch_context_claim(cid, context_types=[CONTEXT_OFFERING],
                                      context_title=title, context_label=label)
        if u.custom:
            self.set_custom_parameters_claim(dict(u.custom))
        if self.lineitems:  # the course's Assignment and Grade Services endpoint
            self.set_ags(self.lineitems)

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> dict[str, str]:
        return {"action": launch_data["launch_url"], "id_token": launch_data["id_token"],
                "state": launch_data["state"]}


# --- the platform ------------------------------------------------------------------------

class Lti13Platform:
    """An LTI 1.3 platform on http://127.0.0.1:PORT with one tool registered: the hub."""

    def __init__(self, port: int, hub_base: str, client_id: str, *,
                 issuer: str = "https://lms.example.edu", deployment_id: str = "deployment-1",
                 host: str = "127.0.0.1", url_host: str | None = None):
        """``url_host``: the host name in the platform's own URLs (default ``host``); e.g.
        "localhost" makes the platform another *site* than a hub on 127.0.0.1, so a browser
        treats the launch as cross-site, as with a real LMS. The server binds ``host``."""
        self.port = port
        self.host = host
        self.hub_base = hub_base.rstrip("/")
        self.client_id = client_id
        self.issuer = issuer
        self.deployment_id = deployment_id
        self.base = f"http://{url_host or host}:{port}"
        self.jwks_url = f"{self.base}/jwks"
        self.authorize_url = f"{self.base}/authorize"
        self.login_url = f"{self.hub_base}/hub/lti13/oauth_login"
        self.redirect_uri = f"{self.hub_base}/hub/lti13/oauth_callback"
        self.target_link_uri = f"{self.hub_base}/hub/"
        #: LTI Advantage grades: the tool's key set (registered with the platform, as an
        #: LMS admin pastes the tool's JWKS URL) and the platform's token endpoint
        self.tool_jwks_url = f"{self.hub_base}/hub/lti13/jwks"
        self.token_url = f"{self.base}/token"
        self.ags = Ags(self)
        self._key = _rsa_pem()
        self._rogue_key = _rsa_pem()
        self.registration = (
            Registration().set_iss(issuer).set_client_id(client_id)
            .set_deployment_id(deployment_id).set_launch_url(self.target_link_uri)
            .set_oidc_login_url(self.login_url)
            .set_platform_public_key(_public_pem(self._key))
            .set_platform_private_key(self._key))
        self.conf = _Conf(registration=self.registration)
        self.users: dict[str, LtiUser] = {}
        #: the course each user's next launch comes from (default: _Launch.context)
        self.contexts: dict[str, tuple[str, str, str]] = {}
        self.next_forgery: str | None = None
        self.next_deployment_id: str | None = None
        self.last_form_post: dict[str, str] | None = None
        self.form_posts: list[dict[str, str]] = []
        self.refusals: list[str] = []
        self.nonces: list[str] = []
        self._hints: dict[str, str] = {}  # lti_message_hint -> user name
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # users and launches

    def add_user(self, name: str, *, email: str | None = None, sub: str | None = None,
                 role: str = "Learner", given_name: str = "",
                 custom: dict[str, str] | None = None) -> LtiUser:
        """Register a person; ``role`` is an LIS membership role (Learner, Instructor...)."""
        user = LtiUser(name=name, email=email if email is not None else f"{name}@example.edu",
                       sub=sub or f"lms-{name}-{secrets.token_hex(4)}", roles=[ROLE + role],
                       given_name=given_name or name.capitalize(), custom=dict(custom or {}))
        self.users[name] = user
        return user

    def in_course(self, name: str, context_id: str, role: str,
                  title: str | None = None) -> LtiUser:
        """``name``'s next launch comes from the LMS course ``context_id``, where they
        have the LIS membership ``role`` (Learner, Instructor, or a whole role URI such
        as ...membership/Instructor#TeachingAssistant), as when they click the tool in
        that course."""
        user = self.user(name)
        user.roles = [role if role.startswith("http") else ROLE + role]
        self.contexts[name] = (context_id, title or context_id, context_id.upper())
        return user

    def user(self, name: str) -> LtiUser:
        return self.users.get(name) or self.add_user(name)

    def login_initiation(self, name: str) -> tuple[str, dict[str, str]]:
        """(hub login URL, form fields) of a third-party-initiated login for ``name``."""
        user = self.user(name)
        hint = secrets.token_urlsafe(16)
        with self._lock:
            self._hints[hint] = name
        login = _OIDCLogin(None, self.conf)
        login.set_lti_message_hint(hint=hint)
        url = login.initiate_login(user.sub)
        parts = urlsplit(url)
        return url.split("?", 1)[0], dict(parse_qsl(parts.query))

    def launch_page(self, name: str) -> str:
        action, fields = self.login_initiation(name)
        return auto_submit_form(action, fields, "Opening JupyterHub")

    def authorize(self, method: str, args: dict[str, str]) -> dict[str, str]:
        """The OIDC authorization endpoint's answer: the form (action, id_token, state) to
        POST to the tool. Raises PlatformRefusal on a request this platform must not honour."""
        def refuse(why: str) -> PlatformRefusal:
            self.refusals.append(why)
            return PlatformRefusal(why)

        if args.get("client_id") != self.client_id:
            raise refuse(f"unknown client_id {args.get('client_id')!r}")
        if args.get("redirect_uri") != self.redirect_uri:
            raise refuse(f"redirect_uri {args.get('redirect_uri')!r} is not the registered "
                         f"{self.redirect_uri!r}")
        if args.get("response_type") != "id_token":
            raise refuse(f"response_type {args.get('response_type')!r} is not id_token")
        if args.get("response_mode") != "form_post":
            raise refuse(f"response_mode {args.get('response_mode')!r} is not form_post")
        if "openid" not in (args.get("scope") or "").split():
            raise refuse(f"scope {args.get('scope')!r} lacks openid")
        for required in ("nonce", "state", "login_hint", "lti_message_hint"):
            if not args.get(required):
                raise refuse(f"{required} is missing")
        with self._lock:
            name = self._hints.get(args["lti_message_hint"])
        if name is None:
            raise refuse("lti_message_hint names no launch of this platform")
        user = self.users[name]
        if args["login_hint"] != user.sub:
            raise refuse("login_hint is not the user this launch was for")

        forgery, self.next_forgery = self.next_forgery, None
        deployment, self.next_deployment_id = self.next_deployment_id, None
        launch = _Launch(_Request((method, dict(args))), self.conf)
        launch.user = user
        launch.context = self.contexts.get(name, _Launch.context)
        launch.lineitems = f"{self.base}/lineitems/{launch.context[0]}"
        self.ags.members.add((launch.context[0], user.sub))
        try:
            form = launch.lti_launch()
        except Exception as e:  # lti1p3platform's own preflight checks
            raise refuse(f"lti1p3platform refused the request: {e!r}") from e
        previous = self.nonces[-1] if self.nonces else None
        self.nonces.append(args["nonce"])
        if deployment is not None:
            form["id_token"] = self._resign(form["id_token"], {DEPLOYMENT_CLAIM: deployment})
        if forgery:
            form["id_token"] = self._forge(form["id_token"], forgery, previous)
        self.last_form_post = dict(form)
        self.form_posts.append(dict(form))
        return form

    def _resign(self, token: str, claims: dict[str, Any]) -> str:
        """The id_token with ``claims`` changed, signed by the platform itself."""
        payload = {**jwt.decode(token, options={"verify_signature": False}), **claims}
        kid = jwt.get_unverified_header(token).get("kid")
        return jwt.encode(payload, self._key, algorithm="RS256",
                          headers={"kid": kid} if kid else None)

    def _forge(self, token: str, forgery: str, previous_nonce: str | None) -> str:
        claims = jwt.decode(token, options={"verify_signature": False})
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._key
        now = int(time.time())
        if forgery == "other_key":
            key, kid = self._rogue_key, Registration().set_platform_private_key(
                self._rogue_key).get_kid()
        elif forgery == "other_key_same_kid":
            key = self._rogue_key
        elif forgery == "wrong_aud":
            claims["aud"] = claims["azp"] = f"not-{self.client_id}"
        elif forgery == "wrong_iss":
            claims["iss"] = "https://evil-lms.example.org"
        elif forgery == "expired":
            claims["iat"], claims["exp"] = now - 400, now - 100
        elif forgery == "old_iat":
            claims["iat"], claims["exp"] = now - 900, now + 300
        elif forgery == "reused_nonce":
            if previous_nonce is None:
                raise ValueError("reused_nonce needs an earlier launch to take the nonce of")
            claims["nonce"] = previous_nonce
        elif forgery == "alg_none":
            return jwt.encode(claims, None, algorithm="none")
        else:
            raise ValueError(f"unknown forgery {forgery!r}; one of {FORGERIES}")
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid} if kid else None)

    def jwks(self) -> dict[str, Any]:
        return dict(self.conf.get_jwks())

    # the HTTP server

    def start(self) -> Lti13Platform:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _send(self, code: int, body: str, ctype: str = "text/html") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str, args: dict[str, str]) -> None:
                path = urlsplit(self.path).path
                try:
                    if path == "/token" and method == "POST":
                        code, body = platform.ags.token(args)
                        self._send(code, json.dumps(body), "application/json")
                    elif path == "/jwks" and method == "GET":
                        self._send(200, json.dumps(platform.jwks()), "application/json")
                    elif path == "/launch" and method == "GET":
                        if not args.get("user"):
                            self._send(400, "launch needs ?user=NAME", "text/plain")
                        else:
                            self._send(200, platform.launch_page(args["user"]))
                    elif path == "/authorize":
                        form = platform.authorize(method, args)
                        action = form.pop("action")
                        self._send(200, auto_submit_form(action, form, "Returning to tool"))
                    else:
                        self._send(404, "not found", "text/plain")
                except PlatformRefusal as e:
                    self._send(400, f"platform refuses: {e}", "text/plain")

            def _ags(self, method: str, body: str) -> bool:
                parts = urlsplit(self.path)
                if not parts.path.startswith("/lineitems/"):
                    return False
                code, ctype, answer = platform.ags.serve(
                    method, parts.path, dict(parse_qsl(parts.query)), dict(self.headers),
                    body)
                self._send(code, json.dumps(answer), ctype)
                return True

            def do_GET(self) -> None:
                if self._ags("GET", ""):
                    return
                self._route("GET", dict(parse_qsl(urlsplit(self.path).query)))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                if self._ags("POST", body):
                    return
                args = dict(parse_qsl(urlsplit(self.path).query))
                args.update(parse_qsl(body))
                self._route("POST", args)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"lti13-platform-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Lti13Platform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- LTI Advantage: Assignment and Grade Services ----------------------------------------

AGS_SCOPES = {
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
}
LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE = "application/vnd.ims.lis.v1.score+json"


class Ags:
    """The platform's grade services, as an LMS implements them (written for the tests:
    lti1p3platform leaves them abstract): the OAuth 2 token endpoint taking the tool's
    JWT client assertion (RFC 7523, checked against the tool's registered JWKS URL: its
    signature, iss = sub = client_id, aud = the token URL, exp, a jti used once), the line
    items of each course (list, find, create) and their scores, per platform user id.

    ``revoke()`` is an LMS admin disabling the tool's key: tokens given out stop working
    and no new one is given (401 invalid_client) until ``restore()``."""

    def __init__(self, platform: Lti13Platform) -> None:
        self.platform = platform
        self.members: set[tuple[str, str]] = set()  # (context id, user sub) launched
        self.tokens: dict[str, set[str]] = {}  # access token -> scopes
        self.jtis: set[str] = set()
        self.revoked = False
        self.lineitems: dict[str, list[dict[str, Any]]] = {}  # context -> line items
        #: line item id -> {user sub: the last score posted}
        self.scores: dict[str, dict[str, dict[str, Any]]] = {}
        self.token_requests: list[tuple[int, str]] = []  # (status, error or "")
        self.score_posts = 0
        self._lock = threading.Lock()

    def revoke(self) -> None:
        with self._lock:
            self.revoked = True
            self.tokens.clear()

    def restore(self) -> None:
        with self._lock:
            self.revoked = False

    def gradebook(self, context: str, label: str) -> dict[str, float]:
        """{user sub: scoreGiven / scoreMaximum} of the line item ``label`` of a course."""
        for item in self.lineitems.get(context, []):
            if item["label"] == label:
                return {sub: s["scoreGiven"] / s["scoreMaximum"]
                        for sub, s in self.scores.get(item["id"], {}).items()}
        raise KeyError(f"the course {context} has no line item {label!r}: "
                       f"{[i['label'] for i in self.lineitems.get(context, [])]}")

    def _refuse(self, status: int, error: str, why: str) -> tuple[int, dict[str, str]]:
        self.token_requests.append((status, why))
        return status, {"error": error, "error_description": why}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        p = self.platform
        if form.get("grant_type") != "client_credentials":
            return self._refuse(400, "unsupported_grant_type", "grant_type")
        if form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return self._refuse(400, "invalid_request", "client_assertion_type")
        assertion = form.get("client_assertion") or ""
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
            keys = _session().get(p.tool_jwks_url, timeout=10).json()["keys"]
            key = next(k for k in keys if k.get("kid") == kid)
            claims = jwt.decode(assertion, jwt.PyJWK(key).key, algorithms=["RS256"],
                                audience=p.token_url, issuer=p.client_id,
                                options={"require": ["exp", "iat", "jti", "sub"]})
        except StopIteration:
            return self._refuse(401, "invalid_client", "no tool key with that kid")
        except Exception as e:  # any bad assertion is a refusal
            return self._refuse(401, "invalid_client", f"client assertion: {e}")
        if claims["sub"] != p.client_id:
            return self._refuse(401, "invalid_client", "sub is not the client_id")
        with self._lock:
            if claims["jti"] in self.jtis:
                return self._refuse(401, "invalid_client", "jti used before")
            self.jtis.add(claims["jti"])
            if self.revoked:
                return self._refuse(401, "invalid_client", "the tool's key was disabled")
            scopes = set((form.get("scope") or "").split()) & AGS_SCOPES
            if not scopes:
                return self._refuse(400, "invalid_scope", "no grade scope requested")
            token = secrets.token_urlsafe(24)
            self.tokens[token] = scopes
        self.token_requests.append((200, ""))
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                     "scope": " ".join(sorted(scopes))}

    def serve(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              body: str) -> tuple[int, str, Any]:
        """/lineitems/CONTEXT (GET: list, POST: create), /lineitems/CONTEXT/N/scores (POST)."""
        auth = headers.get("Authorization") or ""
        with self._lock:
            scopes = self.tokens.get(auth.removeprefix("Bearer ")) \
                if auth.startswith("Bearer ") else None
        if scopes is None:
            return 401, "application/json", {"error": "invalid_token"}
        parts = path.strip("/").split("/")  # lineitems, context[, n, scores]
        context = parts[1] if len(parts) > 1 else ""
        base = f"{self.platform.base}/lineitems/{context}"
        with self._lock:
            items = self.lineitems.setdefault(context, [])
            if len(parts) == 2 and method == "GET":
                found = [i for i in items
                         if all(i.get(k) == query[q] for q, k in
                                (("resource_id", "resourceId"), ("tag", "tag"),
                                 ("resource_link_id", "resourceLinkId")) if q in query)]
                return 200, LINEITEMS, found
            if len(parts) == 2 and method == "POST":
                if "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem" not in scopes:
                    return 403, "application/json", {"error": "lineitem scope needed"}
                item = json.loads(body or "{}")
                if not item.get("label") or not (item.get("scoreMaximum") or 0) > 0:
                    return 400, "application/json", {"error": "label and scoreMaximum > 0"}
                item["id"] = f"{base}/{len(items) + 1}"
                items.append(item)
                return 201, LINEITEM, item
            if len(parts) == 4 and parts[3] == "scores" and method == "POST":
                item_id = f"{base}/{parts[2]}"
                if not any(i["id"] == item_id for i in items):
                    return 404, "application/json", {"error": "no such line item"}
                if "https://purl.imsglobal.org/spec/lti-ags/scope/score" not in scopes:
                    return 403, "application/json", {"error": "score scope needed"}
                if (headers.get("Content-Type") or "").split(";")[0] != SCORE:
                    return 415, "application/json", {"error": f"Content-Type is not {SCORE}"}
                score = json.loads(body or "{}")
                missing = [k for k in ("userId", "scoreGiven", "scoreMaximum", "timestamp",
                                       "activityProgress", "gradingProgress")
                           if k not in score]
                if missing:
                    return 400, "application/json", {"error": f"missing {missing}"}
                if (context, score["userId"]) not in self.members:
                    return 400, "application/json", {
                        "error": f"user {score['userId']} is not in the course {context}"}
                self.scores.setdefault(item_id, {})[score["userId"]] = score
                self.score_posts += 1
                return 200, "application/json", {}
        return 404, "application/json", {"error": "not found"}


# --- a browser's part, with requests -----------------------------------------------------

class LaunchResult(NamedTuple):
    session: requests.Session
    response: requests.Response  # the hub's last answer, its redirect not followed
    # the cookies the session held when it POSTed id_token+state to the hub's callback
    callback_cookies: dict[str, str]


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # everything here is on 127.0.0.1: never through a proxy
    return s


def launch(platform: Lti13Platform, hub_base: str, user: str,
           session: requests.Session | None = None, timeout: float = 30) -> LaunchResult:
    """Launch ``user`` from the platform into the hub as a browser would: the platform's
    /launch page, its form POSTed to the hub's login initiation, the hub's redirect to the
    platform's /authorize, that form POSTed to the hub's callback. Stops at the first answer
    that is not the next step (a refusal), and never follows the callback's redirect: on
    success ``response`` is the hub's 302 that sets the login cookie."""
    s = session or _session()
    page = s.get(f"{platform.base}/launch", params={"user": user}, timeout=timeout)
    page.raise_for_status()
    action, _, fields = parse_form(page.text)
    r = s.post(action, data=fields, allow_redirects=False, timeout=timeout)
    location = r.headers.get("Location", "")
    if r.status_code != 302 or not location.startswith(platform.authorize_url):
        return LaunchResult(s, r, s.cookies.get_dict())
    r = s.get(location, allow_redirects=False, timeout=timeout)
    if r.status_code != 200:
        return LaunchResult(s, r, s.cookies.get_dict())
    action, _, fields = parse_form(r.text)
    if not action.startswith(hub_base.rstrip("/") + "/"):
        raise AssertionError(f"the platform posts the id_token to {action}, not to the hub")
    cookies = s.cookies.get_dict()
    r = s.post(action, data=fields, allow_redirects=False, timeout=timeout)
    return LaunchResult(s, r, cookies)


def replay(form_post: dict[str, str], cookies: dict[str, str] | None = None,
           session: requests.Session | None = None, timeout: float = 30) -> requests.Response:
    """POST a captured form (``platform.last_form_post``) to the hub's callback again, from
    ``session`` (default: a fresh one) with ``cookies`` added (e.g. a LaunchResult's
    callback_cookies, as an attacker who copied them would)."""
    s = session or _session()
    fields = {k: v for k, v in form_post.items() if k != "action"}
    return s.post(form_post["action"], data=fields, cookies=cookies, allow_redirects=False,
                  timeout=timeout)
