"""Issue 5 on a booted host: switching authenticators on a running hub, and the ones
whose real peer runs inside the test itself: native (signup and approval), pam (real
unix accounts), dummy, and LTI 1.1 launches signed exactly as Canvas signs them
(oauthlib, HMAC-SHA1), and LDAP against a real slapd on the host's loopback.
OIDC and LTI 1.3 against their real peers, and the browser runs: not yet."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from hubclient import HubUser
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client
from peers import Slapd
from test_config import hw
from test_install import unit_props


def reload_ok(hub) -> str:
    r = hw(hub, "config", "reload", "--timeout", "120")
    return r.stdout


def refused(u: HubUser) -> bool:
    r = u.login(expect_ok=False)
    return r.status_code != 302


def test_switching_to_native_keeps_servers_and_files(hub):
    c = hub.c
    alice = HubUser(hub.base, "alice", hub.admin_password)
    alice.sign_in(start_server=True)
    alice.execute("open('/home/jupyter-alice/kept.txt', 'w').write('still here')")
    before = unit_props(c, "jupyter-alice-singleuser.service", "InvocationID")
    hw(hub, "config", "set", "auth.type", "native")
    assert "restarted: jupyterhub.service" in reload_ok(hub)
    assert unit_props(c, "jupyter-alice-singleuser.service", "InvocationID") == before
    assert alice.api("GET", "/user/alice/api/contents/kept.txt").status_code == 200


def signup(hub, name: str, password: str) -> requests.Response:
    s = requests.Session()
    s.get(f"{hub.base}/hub/signup", timeout=30)
    return s.post(f"{hub.base}/hub/signup", timeout=30, data={
        "username": name, "signup_password": password,
        "signup_password_confirmation": password, "_xsrf": s.cookies.get("_xsrf") or ""})


def test_native_signup_approval_and_login(hub):
    admin_pw = "Admin-pass-1234"
    assert signup(hub, "alice", admin_pw).status_code == 200  # admins are pre-approved
    alice = HubUser(hub.base, "alice", admin_pw)
    alice.login()
    assert signup(hub, "bob", "Bob-pass-98765").status_code == 200
    bob = HubUser(hub.base, "bob", "Bob-pass-98765")
    assert refused(bob), "an unapproved user logged in"
    r = alice.s.get(f"{hub.base}/hub/authorize/bob", timeout=30)
    assert r.status_code == 200
    bob = HubUser(hub.base, "bob", "Bob-pass-98765")
    bob.login()
    wrong = HubUser(hub.base, "bob", "not-his-password")
    assert refused(wrong)


def test_pam_logs_in_an_existing_unix_user_and_runs_as_them(hub):
    c = hub.c
    hw(hub, "config", "set", "auth.type", "pam")
    assert "restarted: jupyterhub.service" in reload_ok(hub)
    c.run(["useradd", "--create-home", "--groups", "jupyterhub-users", "carla"])
    c.run(["chpasswd"], input="carla:Carla-unix-pw-1\n")
    c.run(["useradd", "--create-home", "outsider"])
    c.run(["chpasswd"], input="outsider:Outsider-pw-1\n")
    carla = HubUser(hub.base, "carla", "Carla-unix-pw-1")
    carla.sign_in(start_server=True)
    assert carla.unix_user() == "carla"
    assert refused(HubUser(hub.base, "carla", "wrong-password"))
    assert refused(HubUser(hub.base, "outsider", "Outsider-pw-1"))  # not in the group


def test_dummy_needs_consent_and_warns_on_every_page(hub):
    hw(hub, "config", "set", "auth.dummy.password", "Shared-demo-pw")
    r = hw(hub, "config", "set", "auth.type", "dummy", check=False)
    assert r.returncode == 2 and "auth.dummy.allow_insecure" in r.stderr
    hw(hub, "config", "set", "auth.dummy.allow_insecure", "true")
    hw(hub, "config", "set", "auth.type", "dummy")
    reload_ok(hub)
    assert "dummy authenticator" in requests.get(f"{hub.base}/hub/login", timeout=30).text
    HubUser(hub.base, "anyone", "Shared-demo-pw").login()
    assert refused(HubUser(hub.base, "anyone", "other"))


def launch(hub, secret: str = "canvas-secret", user_id: str = "12345",
           timestamp: str | None = None, nonce: str | None = None) -> requests.Response:
    """An LTI 1.1 launch as Canvas sends it: form POST, OAuth1 HMAC-SHA1 body signature."""
    url = f"{hub.base}/hub/lti/launch"
    params = {"lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
              "resource_link_id": "course-101-hub", "user_id": "a1b2c3",
              "custom_canvas_user_id": user_id, "roles": "Learner",
              "context_id": "course-101", "oauth_callback": "about:blank"}
    client = Client("canvas-key", client_secret=secret, signature_type=SIGNATURE_TYPE_BODY,
                    timestamp=timestamp, nonce=nonce)
    _, headers, body = client.sign(url, http_method="POST", body=params,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    s = requests.Session()
    r = s.post(url, data=body, headers=headers, allow_redirects=False, timeout=60)
    r.session = s  # type: ignore[attr-defined]
    return r


def test_lti11_launch_logs_in_and_refuses_forgeries(hub):
    c = hub.c
    hw(hub, "config", "set", "auth.lti11.consumers", "canvas-key=canvas-secret")
    hw(hub, "config", "set", "auth.type", "lti11")
    reload_ok(hub)
    r = launch(hub)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    # a numeric LMS id stays a string name, and gets its own unix account
    s = r.session  # type: ignore[attr-defined]
    u = HubUser(hub.base, "12345", "")
    u.s = s
    s.get(f"{hub.base}/hub/home", timeout=30)  # the hub's _xsrf cookie, as a browser gets it
    u.make_token()
    u.start_server()
    assert u.unix_user() == "jupyter-12345"
    assert unit_props(c, "jupyter-12345-singleuser.service", "ActiveState")["ActiveState"] == \
        "active"
    assert launch(hub, secret="not-the-secret").status_code in (401, 403)
    stale = str(int(time.time()) - 300)
    assert launch(hub, timestamp=stale).status_code in (401, 403)
    nonce, ts = uuid.uuid4().hex, str(int(time.time()))
    assert launch(hub, timestamp=ts, nonce=nonce).status_code == 302
    assert launch(hub, timestamp=ts, nonce=nonce).status_code in (401, 403)  # replayed


@pytest.fixture(scope="module")
def slapd():
    server = Slapd(3890)  # on the host's loopback, which the container shares
    yield server
    server.stop()


def test_ldap_right_password_in_group_logs_in_and_spawns(hub, slapd):
    lena = slapd.add_user("lena", "Lena-ldap-pw")
    slapd.add_user("omar", "Omar-ldap-pw")
    slapd.add_group("students", [lena])
    for key, value in (("auth.ldap.server", "127.0.0.1"), ("auth.ldap.port", "3890"),
                       ("auth.ldap.tls", "insecure")):
        hw(hub, "config", "set", key, value)
    # DNs hold commas: add-item takes one item as it is
    hw(hub, "config", "add-item", "auth.ldap.bind_dn_template",
       "uid={username},ou=people,dc=example,dc=edu")
    hw(hub, "config", "add-item", "auth.ldap.allowed_groups",
       "cn=students,ou=groups,dc=example,dc=edu")
    hw(hub, "config", "set", "auth.type", "ldap")
    reload_ok(hub)
    u = HubUser(hub.base, "lena", "Lena-ldap-pw")
    u.sign_in(start_server=True)
    assert u.unix_user() == "jupyter-lena"
    assert refused(HubUser(hub.base, "lena", "not-her-password"))
    assert refused(HubUser(hub.base, "omar", "Omar-ldap-pw"))  # right password, no group
