"""LTI launches are single-use across hub restarts, and LTI 1.3 launches come only from the
registered deployments (hardway_plugins.auth.lti_checks). The booted-host tests replay real
launches after `systemctl restart jupyterhub`; these pin down the store and the checks."""

from __future__ import annotations

import asyncio
import stat
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from cachetools import TTLCache
from hardway_plugins.auth.lti_checks import (
    DEPLOYMENT_CLAIM,
    HardwayLTI11Authenticator,
    HardwayLTI13Authenticator,
    HardwayLTI13CallbackHandler,
    NonceStore,
    keep_until,
    lti11_keep_until,
)
from ltiauthenticator.lti11.validator import LTI11LaunchValidator
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client
from tornado.httputil import (
    HTTPHeaders,
    HTTPServerRequest,
    RequestStartLine,
    parse_body_arguments,
)
from tornado.web import HTTPError

# --- the store


def test_a_nonce_is_refused_after_a_restart(tmp_path):
    db = tmp_path / "hub" / "lti-nonces.sqlite"
    before = NonceStore(db)
    assert before.claim("lti13:iss", "n1", keep_until=time.time() + 600) is True
    assert before.claim("lti13:iss", "n1", keep_until=time.time() + 600) is False
    before.close()  # the hub stops; a new process opens the same file
    after = NonceStore(db)
    assert after.claim("lti13:iss", "n1", keep_until=time.time() + 600) is False
    # another scope (another consumer key, another platform) is another nonce
    assert after.claim("lti11:other-key", "n1", keep_until=time.time() + 600) is True


def test_expired_nonces_are_pruned(tmp_path):
    store = NonceStore(tmp_path / "n.sqlite")
    assert store.claim("s", "old", keep_until=100.0, now=10.0) is True
    assert store.claim("s", "old", keep_until=100.0, now=50.0) is False
    assert store.claim("s", "new", keep_until=900.0, now=50.0) is True
    assert len(store) == 2
    # past its time a launch carrying "old" fails upstream's own checks: forgotten
    assert store.claim("s", "newer", keep_until=900.0, now=200.0) is True
    assert len(store) == 2


def test_the_store_is_root_only(tmp_path):
    db = tmp_path / "n.sqlite"
    db.write_text("")
    db.chmod(0o644)  # an existing file is made 0600 too
    store = NonceStore(db)
    store.claim("s", "n", keep_until=time.time() + 60)
    for f in tmp_path.iterdir():  # the database and SQLite's -wal/-shm beside it
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_damaged_store_refuses_launches_with_503(tmp_path):
    db = tmp_path / "n.sqlite"
    db.write_bytes(b"not a database" * 100)
    auth = HardwayLTI13Authenticator(nonce_db_path=str(db))
    with pytest.raises(HTTPError) as e:
        auth.claim_nonce("s", "n", time.time() + 60, status=400, what="LTI 1.3")
    assert e.value.status_code == 503


def test_kept_until_the_earlier_of_exp_and_max_age():
    assert keep_until({"iat": 1000, "exp": 1300}, max_age=600, leeway=0) == 1301
    assert keep_until({"iat": 1000, "exp": 9999}, max_age=600, leeway=5) == 1606
    # LTI 1.1: upstream accepts a timestamp up to 30 s either way; a margin on top
    assert lti11_keep_until(1000) == 1060


# --- LTI 1.1: a genuine signed launch, replayed

LAUNCH_URL = "http://hub.example.edu/hub/lti/launch"


def signed_launch(secret: str = "canvas-secret", timestamp: str | None = None,
                  nonce: str | None = None) -> Any:
    """A launch request as Canvas signs it (OAuth1 HMAC-SHA1 in the body), as the hub's
    handler sees it."""
    params = {"lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
              "resource_link_id": "course-101-hub", "user_id": "a1b2c3",
              "custom_canvas_user_id": "12345", "roles": "Learner",
              "context_id": "course-101", "oauth_callback": "about:blank"}
    client = Client("canvas-key", client_secret=secret, signature_type=SIGNATURE_TYPE_BODY,
                    timestamp=timestamp or str(int(time.time())),
                    nonce=nonce or uuid.uuid4().hex)
    _, headers, body = client.sign(LAUNCH_URL, http_method="POST", body=params,
                                   headers={"Content-Type":
                                            "application/x-www-form-urlencoded"})
    request = HTTPServerRequest(
        start_line=RequestStartLine("POST", "/hub/lti/launch", "HTTP/1.1"),
        headers=HTTPHeaders({**headers, "Host": "hub.example.edu"}), body=body.encode())
    parse_body_arguments(headers["Content-Type"], request.body, request.body_arguments,
                         request.files, request.headers)
    for name, values in request.body_arguments.items():
        request.arguments.setdefault(name, []).extend(values)
    return SimpleNamespace(request=request)


def lti11(db) -> HardwayLTI11Authenticator:
    return HardwayLTI11Authenticator(consumers={"canvas-key": "canvas-secret"},
                                     nonce_db_path=str(db))


def restart_upstream_memory(monkeypatch) -> None:
    """What a hub restart does to ltiauthenticator's own (per-process) nonce cache."""
    monkeypatch.setattr(LTI11LaunchValidator, "nonces", TTLCache(35, 35.0))


def test_lti11_launch_is_accepted_once_even_across_a_restart(tmp_path, monkeypatch):
    restart_upstream_memory(monkeypatch)
    db = tmp_path / "lti-nonces.sqlite"
    launch = signed_launch()
    result = asyncio.run(lti11(db).authenticate(launch))
    assert result["name"] == "12345"
    restart_upstream_memory(monkeypatch)
    with pytest.raises(HTTPError) as e:
        asyncio.run(lti11(db).authenticate(launch))  # a new hub process, the same file
    assert e.value.status_code == 401
    assert "nonce already used" in e.value.log_message
    # a genuine new launch still logs in
    assert asyncio.run(lti11(db).authenticate(signed_launch()))["name"] == "12345"


def test_lti11_forgery_does_not_use_up_the_nonce(tmp_path, monkeypatch):
    restart_upstream_memory(monkeypatch)
    db = tmp_path / "lti-nonces.sqlite"
    nonce, ts = uuid.uuid4().hex, str(int(time.time()))
    with pytest.raises(HTTPError) as e:
        asyncio.run(lti11(db).authenticate(signed_launch("wrong", ts, nonce)))
    assert e.value.status_code == 401 and "signature" in e.value.log_message
    restart_upstream_memory(monkeypatch)  # (upstream's cache notes nonces before signatures)
    assert asyncio.run(lti11(db).authenticate(signed_launch(timestamp=ts, nonce=nonce)))


def test_lti11_entry_expires_with_the_timestamp_window(tmp_path, monkeypatch):
    restart_upstream_memory(monkeypatch)
    db = tmp_path / "lti-nonces.sqlite"
    ts = int(time.time())
    asyncio.run(lti11(db).authenticate(signed_launch(timestamp=str(ts))))
    store = NonceStore(db)
    assert len(store) == 1
    store.claim("other", "x", keep_until=ts + 10_000, now=lti11_keep_until(ts) + 1)
    assert len(store) == 1  # the launch's own entry was pruned


# --- LTI 1.3: the callback's checks after upstream's


def callback(auth: HardwayLTI13Authenticator, monkeypatch,
             id_token: dict[str, Any]) -> HardwayLTI13CallbackHandler:
    """The callback handler with upstream's part (signature, cookies) already passed."""
    monkeypatch.setattr(LTI13CallbackHandler, "decode_and_validate_launch_request",
                        lambda self: dict(id_token))
    handler = HardwayLTI13CallbackHandler.__new__(HardwayLTI13CallbackHandler)
    handler.application = SimpleNamespace(settings={"authenticator": auth, "app": None})
    return handler


def id_token(deployment: str = "deployment-1") -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "https://lms.example.edu", "nonce": uuid.uuid4().hex, "iat": now,
            "exp": now + 300, DEPLOYMENT_CLAIM: deployment}


def test_lti13_nonce_is_refused_after_a_restart(tmp_path, monkeypatch):
    db = tmp_path / "lti-nonces.sqlite"
    token = id_token()
    first = HardwayLTI13Authenticator(nonce_db_path=str(db))
    assert callback(first, monkeypatch, token).decode_and_validate_launch_request() == token
    restarted = HardwayLTI13Authenticator(nonce_db_path=str(db))
    with pytest.raises(HTTPError) as e:
        callback(restarted, monkeypatch, token).decode_and_validate_launch_request()
    assert e.value.status_code == 400 and "nonce already used" in e.value.log_message


def test_lti13_deployment_allow_list(tmp_path, monkeypatch):
    db = tmp_path / "lti-nonces.sqlite"
    auth = HardwayLTI13Authenticator(nonce_db_path=str(db),
                                     deployment_ids=["deployment-1", "42:abc"])
    ok = id_token("42:abc")
    assert callback(auth, monkeypatch, ok).decode_and_validate_launch_request() == ok
    other = id_token("deployment-2")
    with pytest.raises(HTTPError) as e:
        callback(auth, monkeypatch, other).decode_and_validate_launch_request()
    assert e.value.status_code == 403
    assert e.value.get_message() == ("LTI 1.3 launch refused: deployment_id 'deployment-2' "
                                     "is not registered on this hub")
    # refused before its nonce was taken: the same nonce from a listed deployment passes
    other[DEPLOYMENT_CLAIM] = "deployment-1"
    assert callback(auth, monkeypatch, other).decode_and_validate_launch_request()
    # no list: any deployment, as upstream
    anyone = HardwayLTI13Authenticator(nonce_db_path=str(db))
    any_deployment = id_token("deployment-9")
    assert callback(anyone, monkeypatch,
                    any_deployment).decode_and_validate_launch_request() == any_deployment


def test_the_authenticators_use_the_checking_classes():
    auth = HardwayLTI13Authenticator()
    handlers = dict(auth.get_handlers(app=None))
    assert HardwayLTI13CallbackHandler in handlers.values()
    with pytest.raises(HTTPError, match="nonce_db_path is not set"):
        auth.claim_nonce("s", "n", time.time(), status=400, what="LTI 1.3")
