"""ltiauthenticator 1.6.3's LTI 1.1 and LTI 1.3 logins, each launch accepted once, even
across hub restarts; LTI 1.3 restricted to the deployments the admin registered.

Why: upstream remembers used nonces in the hub's memory only (LTI 1.1: a class-wide cache
of 35 s; LTI 1.3: nothing at all, the nonce is only bound to the browser's cookies), so a
captured launch replayed after ``systemctl restart jupyterhub`` logged in again (measured:
302 for both). The IMS security framework asks a tool to refuse a nonce it has already
received. Here every accepted nonce goes into :class:`NonceStore`, a small SQLite file in
the hub's state directory (root-only, 0600): the INSERT of a nonce already there is the
replay, refused with a 4xx saying the nonce was already used. Each row is kept until no
launch carrying that nonce could pass upstream's own checks anyway, then pruned:

* LTI 1.1: ``oauth_timestamp`` + 30 s (upstream refuses a timestamp more than 30 s off)
  + a margin; the key is (consumer key, timestamp, nonce), as OAuth 1.0 defines it;
* LTI 1.3: the id_token's ``exp``, or ``iat`` + max_age, whichever is earlier, + leeway.

The nonce is claimed only after upstream accepted the launch (signature, timestamp or
id_token, and for 1.3 the browser-bound cookie), so a forged request cannot use up a
genuine launch's nonce.

Wire them as ``JupyterHub.authenticator_class =
"hardway_plugins.auth.lti_checks.HardwayLTI11Authenticator"`` (or ``...HardwayLTI13Authenticator``)
with ``nonce_db_path`` set; ``c.LTI11Authenticator.*`` / ``c.LTI13Authenticator.*`` still
apply (traitlets config follows the class hierarchy).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from ltiauthenticator.lti11.auth import LTI11Authenticator
from ltiauthenticator.lti11.handlers import LTI11AuthenticateHandler
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler
from ltiauthenticator.lti13.validator import LTI13LaunchValidator
from ltiauthenticator.utils import convert_request_to_dict
from tornado.web import HTTPError
from traitlets import Dict, List, Unicode

from . import private_sqlite
from .lti_courses import CONTEXT_CLAIM, ROLES_CLAIM, CourseLanding, LtiCourses

#: upstream's LTI 1.1 validator refuses an oauth_timestamp further than this from now (s)
LTI11_WINDOW = 30
#: kept this much longer than a launch could pass, for a clock stepped meanwhile (s)
MARGIN = 30
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    scope   TEXT NOT NULL,
    nonce   TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (scope, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
"""


class NonceStoreError(Exception):
    """The store could not be read or written: the launch cannot be checked."""


class NonceStore:
    """Nonces already accepted, in a SQLite file, each kept until a given time.

    One INSERT per launch, in its own transaction, on the caller's thread (the hub's event
    loop): a few milliseconds. WAL with synchronous=FULL: a nonce whose claim returned is
    on disk before the launch is answered, so neither a crash nor a restart forgets it.
    The file (and SQLite's -wal/-shm beside it, which take its mode) is 0600."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 1.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = private_sqlite.connect(self.path, _SCHEMA, self.busy_timeout,
                                            check_same_thread=False)
            except (OSError, sqlite3.Error) as e:
                raise NonceStoreError(f"cannot open the LTI nonce store {self.path}: {e} "
                                      "(if it is damaged, remove it: the hub recreates it)"
                                      ) from e
            self._db = db
        return self._db

    def open(self) -> None:
        """Create or open the file now (else the first claim does)."""
        with self._lock:
            self._connect()

    def claim(self, scope: str, nonce: str, keep_until: float,
              now: float | None = None) -> bool:
        """True the first time ``nonce`` is seen in ``scope`` (remembered until
        ``keep_until``), False when it was already used. Prunes what has expired."""
        now = time.time() if now is None else now
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
                added = db.execute("INSERT OR IGNORE INTO nonces (scope, nonce, expires) "
                                   "VALUES (?, ?, ?)", (scope, nonce, keep_until)).rowcount
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise NonceStoreError(f"LTI nonce store {self.path}: {e}") from e
            return added == 1

    def __len__(self) -> int:
        with self._lock:
            return self._connect().execute("SELECT count(*) FROM nonces").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def keep_until(id_token: dict[str, Any], max_age: int, leeway: int) -> float:
    """The last moment an id_token with these claims could still pass upstream's checks:
    PyJWT refuses it after exp + leeway, ltiauthenticator after iat + max_age + leeway."""
    limits = [float(id_token[c]) + extra for c, extra in (("exp", 0), ("iat", max_age))
              if isinstance(id_token.get(c), int | float)]
    return (min(limits) if limits else time.time() + max_age) + leeway + 1


def lti11_keep_until(timestamp: int) -> float:
    """The last moment upstream could accept an LTI 1.1 launch signed at ``timestamp``
    (it allows 30 s either way), plus a margin."""
    return float(timestamp) + LTI11_WINDOW + MARGIN


class SingleUseNonces(Authenticator):
    """What both hardway LTI authenticators add upstream: the on-disk nonce store."""

    nonce_db_path = Unicode(
        "",
        config=True,
        help="SQLite file of the nonces already accepted (hardway: /var/lib/hardway/hub/"
             "lti-nonces.sqlite). Created 0600; launches are refused while it is unusable.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._nonce_store: NonceStore | None = None
        if self.nonce_db_path:
            try:  # say so at start when the file is unusable; launches then answer 503
                self.nonce_store.open()
            except NonceStoreError as e:
                self.log.error("%s", e)

    @property
    def nonce_store(self) -> NonceStore:
        if not self.nonce_db_path:
            raise HTTPError(500, "nonce_db_path is not set: LTI launches cannot be checked "
                                 "for replays")
        if self._nonce_store is None or self._nonce_store.path != Path(self.nonce_db_path):
            self._nonce_store = NonceStore(self.nonce_db_path)
        return self._nonce_store

    def claim_nonce(self, scope: str, nonce: str, keep_until: float, *, status: int,
                    what: str) -> None:
        """Accept ``nonce`` once; a second use is refused with ``status`` (4xx)."""
        try:
            first = self.nonce_store.claim(scope, nonce, keep_until)
        except NonceStoreError as e:
            self.log.error("%s", e)
            raise HTTPError(503, "the launch could not be checked for replays; "
                                 "try again shortly") from None
        if not first:
            self.log.warning("%s launch replayed (%s): nonce already used", what, scope)
            raise HTTPError(status, f"{what} launch refused: nonce already used "
                                    "(a launch is accepted once; start it again from the LMS)")


class HardwayLTI11LaunchHandler(CourseLanding, LTI11AuthenticateHandler):
    """Upstream's launch, then the LMS course's group (context_id, roles)."""

    async def login_user(self, data: Any = None) -> Any:
        user = await super().login_user(data)
        args = convert_request_to_dict(self.request.arguments)
        roles = str(args.get("roles") or "").split(",")
        await self.join_course_of_launch(user, args.get("context_id"), roles,
                                         ("lti11", args))
        return user


class HardwayLTI11Authenticator(SingleUseNonces, LtiCourses, LTI11Authenticator):
    """LTI11Authenticator whose launches are accepted once, restart or not, and put the
    user in their LMS course's group."""

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [(path, HardwayLTI11LaunchHandler if h is LTI11AuthenticateHandler else h)
                for path, h in super().get_handlers(app)]

    async def authenticate(self, handler: Any, data: dict | None = None) -> dict | None:
        # upstream checks the body, the timestamp window and the signature, or raises
        result = await super().authenticate(handler, data)
        if result is None:
            return None
        args = convert_request_to_dict(handler.request.arguments)
        timestamp = int(args["oauth_timestamp"])  # upstream checked it is an integer
        self.claim_nonce(f"lti11:{args['oauth_consumer_key']}",
                         f"{timestamp}:{args['oauth_nonce']}", lti11_keep_until(timestamp),
                         status=401, what="LTI 1.1")
        return result


class HardwayLTI13CallbackHandler(CourseLanding, LTI13CallbackHandler):
    """Upstream's callback, then: the deployment must be registered (when a list is set)
    and the id_token's nonce must not have been accepted before; after the login, the
    LMS course's group (the context and roles claims)."""

    async def login_user(self, data: Any = None) -> Any:
        user = await super().login_user(data)
        claims = data if isinstance(data, dict) else {}
        context = claims.get(CONTEXT_CLAIM)
        roles = claims.get(ROLES_CLAIM)
        await self.join_course_of_launch(
            user, context.get("id") if isinstance(context, dict) else None,
            roles if isinstance(roles, list) else [], ("lti13", claims))
        return user

    def decode_and_validate_launch_request(self) -> dict[str, Any]:
        # signature, iss, aud, exp/iat, and the nonce bound to this browser's cookie
        id_token = super().decode_and_validate_launch_request()
        auth = self.authenticator
        if not isinstance(auth, HardwayLTI13Authenticator):
            raise HTTPError(500, "the LTI 1.3 callback needs HardwayLTI13Authenticator")
        auth.check_deployment(id_token)
        validator = LTI13LaunchValidator(parent=self.app)
        until = keep_until(id_token, validator.max_age, validator.time_leeway)
        auth.claim_nonce(f"lti13:{id_token.get('iss')}", str(id_token.get("nonce")), until,
                         status=400, what="LTI 1.3")
        return id_token


class ToolJwksHandler(BaseHandler):
    """The tool's public key set: the LMS checks the tool's signed token requests
    (grades) against it. Public, like any JWKS."""

    def get(self) -> None:
        auth = self.authenticator
        keys = auth.tool_jwks if isinstance(auth, HardwayLTI13Authenticator) else {}
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "max-age=300")
        self.finish(json.dumps(keys or {"keys": []}))


class HardwayLTI13Authenticator(SingleUseNonces, LtiCourses, LTI13Authenticator):
    """LTI13Authenticator whose callback accepts each nonce once, restart or not, and
    only launches from the listed deployments; it serves the tool's public key."""

    callback_handler = HardwayLTI13CallbackHandler

    tool_jwks = Dict(
        {}, config=True,
        help="The tool's public key set ({'keys': [...]}), served at /hub/lti13/jwks.")

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [*super().get_handlers(app), ("/lti13/jwks", ToolJwksHandler)]

    deployment_ids = List(
        Unicode(),
        config=True,
        help="Deployment ids (the id_token's deployment_id claim) allowed to launch; "
             "empty: any deployment of the platform.",
    )

    def check_deployment(self, id_token: dict[str, Any]) -> None:
        if not self.deployment_ids:
            return
        deployment = id_token.get(DEPLOYMENT_CLAIM)
        if not isinstance(deployment, str) or deployment not in self.deployment_ids:
            self.log.warning("LTI 1.3 launch from deployment %r refused: not in "
                             "auth.lti13.deployment_ids %s", deployment, self.deployment_ids)
            raise HTTPError(403, "LTI 1.3 launch refused: deployment_id %r is not registered "
                                 "on this hub", deployment)
