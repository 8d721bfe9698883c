"""Issue 5 on a booted host: switching authenticators on a running hub, and the ones
whose real peer runs inside the test itself: native (signup and approval), pam (real
unix accounts), dummy, and LTI 1.1 launches signed exactly as Canvas signs them
(oauthlib, HMAC-SHA1), LDAP against a real slapd, generic OAuth2/OIDC against npm's
oidc-provider, and LTI 1.3 against a platform built on lti1p3platform, all on the host's
loopback (which the container shares). GitHub cannot be reached from here: its rendered
config is checked against oauthenticator's classes in tests/test_authenticators.py."""

from __future__ import annotations

import html
import re
import time
import uuid
from urllib.parse import urljoin

import pytest
import requests
from browser import chromium, chromium_missing, wait_for_jupyterlab
from conftest import ARTIFACTS, record
from hubclient import HubUser, wait_for_hub
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client
from peer_lti13 import Lti13Platform
from peer_lti13 import launch as launch_lti13
from peer_lti13 import replay as replay_lti13
from peer_oidc import OidcProvider
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
    # a name with a dot, as many campus accounts have: logs in and runs code as itself
    c.run(["useradd", "--create-home", "--groups", "jupyterhub-users", "john.doe"])
    c.run(["chpasswd"], input="john.doe:John-unix-pw-1\n")
    john = HubUser(hub.base, "john.doe", "John-unix-pw-1")
    john.sign_in(start_server=True)
    assert john.unix_user() == "john.doe"
    assert john.execute("6 * 7") == "42"


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


def signed_launch(hub, secret: str = "canvas-secret", user_id: str = "12345",
                  timestamp: str | None = None, nonce: str | None = None,
                  extra: dict[str, str] | None = None) -> tuple[str, dict[str, str], str]:
    """An LTI 1.1 launch as Canvas signs it (OAuth1 HMAC-SHA1 body signature):
    (url, headers, body), as someone who captured it would hold it. ``extra``: launch
    parameters over the defaults (context_id, roles...)."""
    url = f"{hub.base}/hub/lti/launch"
    params = {"lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
              "resource_link_id": "course-101-hub", "user_id": "a1b2c3",
              "custom_canvas_user_id": user_id, "roles": "Learner",
              "context_id": "course-101", "oauth_callback": "about:blank", **(extra or {})}
    client = Client("canvas-key", client_secret=secret, signature_type=SIGNATURE_TYPE_BODY,
                    timestamp=timestamp, nonce=nonce)
    _, headers, body = client.sign(url, http_method="POST", body=params,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    return url, headers, body


def post_launch(url: str, headers: dict[str, str], body: str) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    r = s.post(url, data=body, headers=headers, allow_redirects=False, timeout=60)
    r.session = s  # type: ignore[attr-defined]
    return r


def launch(hub, secret: str = "canvas-secret", user_id: str = "12345",
           timestamp: str | None = None, nonce: str | None = None) -> requests.Response:
    """An LTI 1.1 launch as Canvas sends it: form POST, OAuth1 HMAC-SHA1 body signature."""
    return post_launch(*signed_launch(hub, secret, user_id, timestamp, nonce))


def restart_hub(hub) -> float:
    """``systemctl restart jupyterhub``, until the hub answers through the proxy again."""
    t0 = time.monotonic()
    hub.c.run(["systemctl", "restart", "jupyterhub"])
    wait_for_hub(hub.base, 120)
    return time.monotonic() - t0


def message(r: requests.Response) -> str:
    """The reason on the hub's error page (or the body), unescaped."""
    return html.unescape(r.text)


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


def replay_refused(version: str, replayed, restart_s: float, status: int, what: str) -> None:
    """A launch captured before `systemctl restart jupyterhub` and sent again after it is
    refused for its nonce, with the hub's own words (recorded as a figure)."""
    record(f"{version}-replay-after-restart", {
        "figure": replayed.status_code, "restart_s": round(restart_s, 1),
        "unit": "HTTP status of the replayed launch",
        "how": f"a launch accepted (302), systemctl restart jupyterhub, {what}"})
    label = {"lti11": "LTI 1.1", "lti13": "LTI 1.3"}[version]
    assert replayed.status_code == status, (replayed.status_code, message(replayed)[:500])
    assert f"{label} launch refused: nonce already used" in message(replayed), \
        message(replayed)[:500]


def test_lti11_launch_replayed_after_a_hub_restart_is_refused(hub):
    """Upstream remembers LTI 1.1 nonces in the hub's memory (35 s); hardway on disk."""
    hw(hub, "config", "set", "auth.lti11.consumers", "canvas-key=canvas-secret",
       "auth.type", "lti11")
    reload_ok(hub)
    # signed as an LMS whose clock is 20 s ahead would sign it: upstream accepts a timestamp
    # up to 30 s either way, so the captured launch stays valid for about 50 s from now,
    # long enough for the restart below
    ts = int(time.time()) + 20
    captured = signed_launch(hub, user_id="67890", timestamp=str(ts))
    r = post_launch(*captured)
    assert r.status_code == 302, (r.status_code, message(r)[:300])
    took = restart_hub(hub)
    assert time.time() < ts + 30, f"the restart took {took:.0f} s: the launch expired anyway"
    replay_refused("lti11", post_launch(*captured), took, 401, "the same signed body again")
    # a genuine launch after the restart still logs in
    fresh = launch(hub, user_id="67890")
    assert fresh.status_code == 302, (fresh.status_code, message(fresh)[:300])


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


OIDC_PORT = 9090


@pytest.fixture(scope="module")
def oidc():
    users = {"ana": {"password": "Ana-oidc-pw", "groups": ["students"],
                     "email": "ana@example.edu"},
             "omar": {"password": "Omar-oidc-pw", "groups": ["visitors"],
                      "email": "omar@example.edu"},
             "prof": {"password": "Prof-oidc-pw", "groups": ["students", "staff"],
                      "email": "prof@example.edu"},
             "lina": {"password": "Lina-oidc-pw", "groups": ["students"],
                      "email": "lina@example.edu"}}
    # PKCE required: a hub that did not send a code_challenge would be turned away
    with OidcProvider(OIDC_PORT, "hardway-hub", "oidc-client-secret",
                      "http://127.0.0.1/hub/oauth_callback", users, require_pkce=True) as op:
        yield op


def use_generic(hub, op: OidcProvider) -> None:
    """auth.type generic against the provider, the secret given as a file: reference."""
    hub.c.run(["sh", "-c", "umask 077 && printf %s oidc-client-secret > /etc/hardway/oidc"])
    for key, value in (("public_url", "http://127.0.0.1/"),
                       ("auth.generic.client_id", op.client_id),
                       ("auth.generic.client_secret", "file:/etc/hardway/oidc"),
                       ("auth.generic.authorize_url", op.authorize_url),
                       ("auth.generic.token_url", op.token_url),
                       ("auth.generic.userdata_url", op.userinfo_url),
                       ("auth.generic.groups_claim", "groups"),
                       ("auth.generic.allowed_groups", "students"),
                       ("auth.generic.admin_groups", "staff")):
        hw(hub, "config", "set", key, value)
    hw(hub, "config", "set", "auth.type", "generic")
    reload_ok(hub)


def oidc_login(hub, name: str, password: str) -> tuple[requests.Session, requests.Response]:
    """The authorization-code flow as a browser does it: hub → provider's login form →
    back to the hub's callback. Returns the hub's answer to the callback."""
    s = requests.Session()
    r = s.get(f"{hub.base}/hub/oauth_login?next=", timeout=30)  # follows to the form
    assert r.status_code == 200 and 'name="password"' in r.text, r.text[:300]
    assert "code_challenge=" in r.history[0].headers["Location"], "no PKCE challenge sent"
    action = re.search(r'action="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
    r = s.post(urljoin(r.url, action), data={"username": name, "password": password},
               timeout=30, allow_redirects=False)
    while r.status_code in (302, 303) and "/hub/oauth_callback" not in r.headers["Location"]:
        r = s.get(urljoin(r.url, r.headers["Location"]), timeout=30, allow_redirects=False)
    assert "/hub/oauth_callback" in r.headers.get("Location", ""), (r.status_code, r.text[:300])
    r = s.get(r.headers["Location"], timeout=60, allow_redirects=False)
    return s, r


def test_generic_oidc_code_flow_with_groups(hub, oidc):
    use_generic(hub, oidc)
    s, r = oidc_login(hub, "ana", "Ana-oidc-pw")
    assert r.status_code == 302, (r.status_code, r.text[:300], oidc.output()[-2000:])
    ana = HubUser(hub.base, "ana", "")
    ana.s = s
    s.get(f"{hub.base}/hub/home", timeout=30)
    ana.make_token()
    ana.start_server()
    assert ana.unix_user() == "jupyter-ana"
    assert ana.api("GET", "/hub/api/user").json()["admin"] is False
    # omar authenticates at the provider, but his groups are not allowed
    _, r = oidc_login(hub, "omar", "Omar-oidc-pw")
    assert r.status_code == 403, (r.status_code, r.text[:300])
    # prof is in the admin group: admin on the hub
    s, r = oidc_login(hub, "prof", "Prof-oidc-pw")
    assert r.status_code == 302
    prof = HubUser(hub.base, "prof", "")
    prof.s = s
    s.get(f"{hub.base}/hub/home", timeout=30)
    prof.make_token()
    assert prof.api("GET", "/hub/api/user").json()["admin"] is True


LTI13_PORT = 9091


@pytest.fixture(scope="module")
def platform(hub):
    with Lti13Platform(LTI13_PORT, hub.base, "hardway-tool-10000000000042") as p:
        yield p


def use_lti13(hub, p: Lti13Platform) -> None:
    hw(hub, "config", "set", "auth.lti13.issuer", p.issuer,
       "auth.lti13.client_id", p.client_id,
       "auth.lti13.authorize_url", p.authorize_url,
       "auth.lti13.jwks_url", f"{p.base}/jwks", "auth.type", "lti13")
    reload_ok(hub)


def test_lti13_platform_launch_logs_in_and_refuses_forgeries(hub, platform):
    # a required key missing: refused by name, nothing written
    r = hw(hub, "config", "set", "auth.type", "lti13", check=False)
    assert r.returncode == 2 and "auth.lti13." in r.stderr and "required" in r.stderr
    use_lti13(hub, platform)
    platform.add_user("dana", email="dana@example.edu")
    ok = launch_lti13(platform, hub.base, "dana")
    assert ok.response.status_code == 302, (ok.response.status_code, ok.response.text[:300])
    dana = HubUser(hub.base, "dana@example.edu", "")
    dana.s = ok.session
    ok.session.get(f"{hub.base}/hub/home", timeout=30)
    dana.make_token()
    dana.start_server()
    assert dana.unix_user().startswith("jupyter-dana")
    form, cookies = platform.last_form_post, ok.callback_cookies
    statuses = {}
    for forgery in ("other_key", "other_key_same_kid", "wrong_aud", "wrong_iss", "expired",
                    "reused_nonce"):
        platform.next_forgery = forgery
        statuses[forgery] = launch_lti13(platform, hub.base, "dana").response.status_code
    # the exact form_post of the good launch again, with the cookies of the browser that
    # made it (as someone who copied them would): upstream accepts this; hardway does not
    statuses["replayed"] = replay_lti13(form, cookies).status_code
    record("lti13-refusals", {"figure": statuses, "unit": "HTTP status of the hub's callback",
                              "how": "forged launches from the lti1p3platform peer"})
    assert all(s in (400, 401, 403) for s in statuses.values()), statuses


def test_lti13_launch_replayed_after_a_hub_restart_is_refused(hub, platform):
    """Upstream binds a launch to the browser's cookies only; hardway also refuses a nonce
    it accepted before, remembered on disk across restarts."""
    use_lti13(hub, platform)
    platform.add_user("fay", email="fay@example.edu")
    ok = launch_lti13(platform, hub.base, "fay")
    assert ok.response.status_code == 302, (ok.response.status_code, message(ok.response)[:300])
    form, cookies = platform.last_form_post, ok.callback_cookies
    assert form is not None
    took = restart_hub(hub)
    # the captured id_token is still within its validity (exp, iat + 600 s)
    replay_refused("lti13", replay_lti13(form, cookies), took, 400,
                   "its form_post and cookies again")
    fresh = launch_lti13(platform, hub.base, "fay")
    assert fresh.response.status_code == 302, message(fresh.response)[:300]
    mode = hub.c.run(["stat", "-c", "%a %U", "/var/lib/hardway/hub/lti-nonces.sqlite"])
    assert mode.stdout.split() == ["600", "root"]


def test_lti13_deployment_allow_list(hub, platform):
    use_lti13(hub, platform)
    hw(hub, "config", "set", "auth.lti13.deployment_ids", f"{platform.deployment_id},42:other",
       "public_url", "http://127.0.0.1/")
    assert "restarted: jupyterhub.service" in reload_ok(hub)
    assert f"deployment ids allowed: 42:other, {platform.deployment_id}\n" in \
        hw(hub, "lti").stdout
    platform.add_user("gus", email="gus@example.edu")
    ok = launch_lti13(platform, hub.base, "gus")
    assert ok.response.status_code == 302, (ok.response.status_code, message(ok.response)[:300])
    # a genuine launch, signed by the platform, from a deployment the admin did not register
    platform.next_deployment_id = "deployment-of-another-course"
    other = launch_lti13(platform, hub.base, "gus").response
    record("lti13-unregistered-deployment", {"figure": other.status_code,
                                             "unit": "HTTP status of the hub's callback",
                                             "how": "id_token signed by the platform, "
                                                    "deployment_id not in the allow list"})
    assert other.status_code == 403, (other.status_code, message(other)[:500])
    assert ("LTI 1.3 launch refused: deployment_id 'deployment-of-another-course' is not "
            "registered on this hub") in message(other), message(other)[:500]
    hw(hub, "config", "unset", "auth.lti13.deployment_ids")
    reload_ok(hub)
    platform.next_deployment_id = "deployment-of-another-course"
    assert launch_lti13(platform, hub.base, "gus").response.status_code == 302  # any, again


@pytest.fixture(scope="module")
def browser():
    missing = chromium_missing()
    if missing:
        pytest.fail(f"no browser for the browser tests: {missing} (run-tests.sh installs it)")
    with chromium(ARTIFACTS) as b:
        yield b


def test_browser_oidc_login_ends_in_jupyterlab(hub, oidc, browser):
    use_generic(hub, oidc)
    page = browser.new_page()
    page.goto(f"{hub.base}/hub/oauth_login?next=")
    page.wait_for_selector("input[name=password]")
    assert page.url.startswith(oidc.issuer), page.url  # at the provider's own login form
    page.fill("input[name=username]", "lina")
    page.fill("input[name=password]", "Lina-oidc-pw")
    browser.screenshot(page, "oidc-1-provider-login")
    page.click("#login")
    took = wait_for_jupyterlab(page, 120_000)
    browser.screenshot(page, "oidc-2-jupyterlab")
    assert page.url.startswith(f"{hub.base}/user/lina/lab"), page.url
    record("browser-oidc-to-lab", {"figure": round(took, 2), "unit": "s",
                                   "how": "Chromium: provider login submitted until the "
                                          "JupyterLab launcher showed (includes the spawn)"})


def test_browser_lti13_launch_ends_in_jupyterlab(hub, platform, browser):
    use_lti13(hub, platform)
    platform.add_user("erin", email="erin@example.edu")
    page = browser.new_page()
    # the LMS page a student clicks; the rest is the platform's and the hub's forms
    page.goto(f"{platform.base}/launch?user=erin")
    wait_for_jupyterlab(page, 120_000)
    browser.screenshot(page, "lti13-jupyterlab")
    assert page.url.startswith(f"{hub.base}/user/erin"), page.url
