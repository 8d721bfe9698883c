"""auth "firstuse": closed by default, the hub-side subclass (threads, races, error pages)
and the admins' first passwords at install. The hub side runs against JupyterHub's own
classes: its real ``init_users`` fills an in-memory hub database, its real handlers and
templates render the login form."""

from __future__ import annotations

import asyncio
import dbm
import re
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from unittest import mock

import bcrypt
import pytest
from conftest import write_config
from firstuseauthenticator import FirstUseAuthenticator
from firstuseauthenticator.firstuseauthenticator import CustomLoginHandler
from hardway_plugins.auth import firstuse, firstuse_hub
from hardway_plugins.auth.firstuse_hub import HardwayFirstUseAuthenticator, HardwayLoginHandler
from traitlets.config import Config

from hardway.errors import ConfigError
from hardway.ops.hubcheck import problems
from hardway.ops.install import render_now
from hardway.plugin.contract import Context
from hardway.plugin.manager import load_settings

PASSWORD_LINE = re.compile(r"admin (\S+)'s first password: (\S+) \(shown once; change it at "
                           r"(\S+)/hub/auth/change-password\)\Z")


# ---- the rendered configuration -------------------------------------------------------

def rendered_hub_config(paths, registry, extra: str = "") -> dict[str, Any]:
    import json

    write_config(paths, "auth:\n  type: firstuse\n" + extra)
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "h"}, pm=registry.pm)
    files = {f.path: f for f in render_now(settings, registry, ctx)}
    return json.loads(files[paths.hub_json].content)["config"]


def test_closed_by_default_and_configures_the_hardway_subclass(paths, registry):
    config = rendered_hub_config(paths, registry)
    assert config["FirstUseAuthenticator"]["create_users"] is False
    assert config["JupyterHub"]["authenticator_class"] == (
        "hardway_plugins.auth.firstuse_hub.HardwayFirstUseAuthenticator")
    assert problems(config) == []
    # the upstream class's section reaches the subclass (traitlets follows the hierarchy)
    auth = HardwayFirstUseAuthenticator(config=Config(config))
    assert auth.create_users is False
    assert auth.dbm_path == str(paths.firstuse_db)
    assert auth.min_password_length == 8
    assert isinstance(auth, FirstUseAuthenticator)


def test_open_signup_is_the_one_explicit_switch(paths, registry):
    config = rendered_hub_config(paths, registry, "  firstuse:\n    create_users: true\n")
    assert config["FirstUseAuthenticator"]["create_users"] is True
    key = next(k for k in registry.selected(load_settings(paths, registry))["auth"].keys()
               if k.name == "auth.firstuse.create_users")
    assert "unix user and a terminal" in key.description


# ---- the hub side, against JupyterHub's own init_users -----------------------------------

async def hub_authenticator(tmp_path, **auth: Any) -> HardwayFirstUseAuthenticator:
    """An authenticator as the hub has it after start: JupyterHub's init_users has put
    the admins and the allowed users into an (in-memory) hub database."""
    from jupyterhub import orm
    from jupyterhub.app import JupyterHub

    c = Config()
    c.Authenticator.admin_users = set(auth.pop("admin_users", ()))
    c.Authenticator.allowed_users = set(auth.pop("allowed_users", ()))
    c.FirstUseAuthenticator.dbm_path = str(tmp_path / "passwords.dbm")
    c.FirstUseAuthenticator.create_users = auth.pop("create_users", False)
    for name, value in auth.items():
        setattr(c.FirstUseAuthenticator, name, value)
    app = JupyterHub(config=c)
    app.db = orm.new_session_factory("sqlite:///:memory:")()
    app.authenticator = HardwayFirstUseAuthenticator(parent=app,
                                                     _deprecated_db_session=app.db)
    await app.init_role_creation()
    await app.init_users()
    return app.authenticator


async def login(auth: Any, name: str, password: str, handler: Any = None) -> str | None:
    """JupyterHub's outer login API: authenticate, then its block and allow checks."""
    result = await auth.get_authenticated_user(handler, {"username": name,
                                                         "password": password})
    return None if result is None else result["name"]


def stored(auth: Any) -> dict[str, bytes]:
    with dbm.open(auth.dbm_path, "c") as db:
        return {k.decode(): db[k] for k in db.keys()}


async def while_ticking(start: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """Start a ticker on this loop, then ``start()``; return its result and the longest
    gap between ticks (how long the loop answered nothing else)."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = loop.time()
        while not done:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker has its first time before anything else runs
    try:
        result = await start()
    finally:
        done = True
        await task
    return result, max(gaps)


def test_closed_unknown_names_get_nothing_allowed_and_admins_claim(tmp_path):
    async def run() -> None:
        auth = await hub_authenticator(tmp_path, admin_users={"alice"},
                                       allowed_users={"bob"})
        assert await login(auth, "mallory", "mallorys-password") is None
        assert await login(auth, "alice", "alices-password") == "alice"
        assert await login(auth, "Bob", "bobs-password") == "bob"
        assert set(stored(auth)) == {"alice", "bob"}  # nothing for mallory
        assert await login(auth, "bob", "not-bobs-password") is None
        assert await login(auth, "bob", "bobs-password") == "bob"

    asyncio.run(run())


def test_closed_with_no_allow_list_admins_and_admin_page_users_only(tmp_path):
    async def run() -> None:
        from jupyterhub import orm

        auth = await hub_authenticator(tmp_path, admin_users={"alice"})
        assert await login(auth, "carol", "carols-password") is None
        # the admin page (POST /hub/api/users/carol) adds carol to the hub database
        auth.db.add(orm.User(name="carol"))
        auth.db.commit()
        assert await login(auth, "carol", "carols-password") == "carol"
        assert await login(auth, "alice", "alices-password") == "alice"
        assert set(stored(auth)) == {"alice", "carol"}

    asyncio.run(run())


def test_open_signup_still_refuses_names_off_the_allow_list_before_storing(tmp_path):
    async def run() -> None:
        auth = await hub_authenticator(tmp_path, create_users=True, allowed_users={"bob"})
        assert await login(auth, "dave", "daves-password") is None
        assert "dave" not in stored(auth)  # upstream stored it, then refused the login
        assert await login(auth, "bob", "bobs-password") == "bob"

    asyncio.run(run())


def test_too_short_and_too_long_passwords_are_refused_with_a_message(tmp_path):
    async def run() -> None:
        auth = await hub_authenticator(tmp_path, allowed_users={"bob"})
        handler = SimpleNamespace(custom_login_error="")
        assert await login(auth, "bob", "short", handler) is None
        assert "at least 7 characters" in handler.custom_login_error  # upstream default
        assert await login(auth, "bob", "é" * 40, handler) is None  # 80 bytes
        assert "at most 72 bytes" in handler.custom_login_error
        assert stored(auth) == {}

    asyncio.run(run())


def test_bcrypt_runs_off_the_event_loop(tmp_path):
    """10 first logins and then 10 logins at once, bcrypt at cost 12 (~0.2 s each): the
    loop keeps ticking at least every 0.6 s. On the loop, the 10 hashes would stall it
    for ~2 s at once; the margin absorbs a 2-core machine whose cores the 10 hashing
    threads and a parallel test run share (0.25 s failed once so)."""
    names = [f"user{i}" for i in range(10)]

    async def run() -> None:
        auth = await hub_authenticator(tmp_path, allowed_users=set(names))
        results, gap = await while_ticking(lambda: asyncio.gather(
            *(login(auth, n, f"{n}-password") for n in names)))
        assert results == names
        assert gap < 0.6, f"the loop stalled for {gap:.2f} s during first logins"
        assert all(h.startswith(b"$2b$12$") for h in stored(auth).values())
        results, gap = await while_ticking(lambda: asyncio.gather(
            *(login(auth, n, f"{n}-password") for n in names),
            login(auth, "user0", "wrong-password")))
        assert results == [*names, None]
        assert gap < 0.6, f"the loop stalled for {gap:.2f} s during logins"

    asyncio.run(run())


def test_the_ticker_sees_upstream_block_the_loop(tmp_path):
    """The measurement above can fail: upstream hashes on the loop."""
    async def run() -> None:
        auth = FirstUseAuthenticator(dbm_path=str(tmp_path / "up.dbm"), create_users=True)
        _, gap = await while_ticking(lambda: asyncio.gather(
            *(auth.authenticate(None, {"username": f"u{i}", "password": "password-x"})
              for i in range(3))))
        assert gap > 0.3

    asyncio.run(run())


def test_two_first_logins_of_one_name_the_first_writer_wins(tmp_path, monkeypatch):
    hashed: list[bytes] = []
    real = bcrypt.hashpw

    def counting(password: bytes, salt: bytes) -> bytes:
        hashed.append(password)
        return real(password, salt)

    monkeypatch.setattr(firstuse_hub.bcrypt, "hashpw", counting)

    async def run() -> None:
        auth = await hub_authenticator(tmp_path, allowed_users={"dora"})
        results = await asyncio.gather(login(auth, "dora", "password-one"),
                                       login(auth, "dora", "password-two"))
        assert sorted(hashed) == [b"password-one", b"password-two"]  # both were first
        assert results.count("dora") == 1 and results.count(None) == 1
        winner = "password-one" if results[0] == "dora" else "password-two"
        loser = "password-two" if winner == "password-one" else "password-one"
        db = stored(auth)
        assert list(db) == ["dora"] and bcrypt.checkpw(winner.encode(), db["dora"])
        assert await login(auth, "dora", loser) is None
        assert await login(auth, "dora", winner) == "dora"
        # the same password typed twice at once: both get in, one hash stays
        results = await asyncio.gather(login(auth, "dora", winner),
                                       login(auth, "dora", winner))
        assert results == ["dora", "dora"] and stored(auth) == db

    asyncio.run(run())


def test_change_password_runs_off_the_loop_and_deleting_a_user_forgets_it(tmp_path):
    async def run() -> None:
        auth = await hub_authenticator(tmp_path, allowed_users={"bob"})
        assert await login(auth, "bob", "first-password") == "bob"
        msg, gap = await while_ticking(lambda: asyncio.gather(
            *(auth.reset_password("bob", f"new-password-{i}") for i in range(4))))
        assert all("success" in m for m in msg) and gap < 0.1
        assert await login(auth, "bob", "first-password") is None
        assert (await auth.reset_password("bob", "short")).startswith("Password too short")
        await auth.delete_user(SimpleNamespace(name="bob"))
        assert "bob" not in stored(auth) and "bob" not in auth.allowed_users

    asyncio.run(run())


def test_the_hub_waits_for_the_install_lock_without_blocking(tmp_path):
    async def run() -> None:
        auth = await hub_authenticator(tmp_path, allowed_users={"bob"})
        with firstuse.open_passwords(auth.dbm_path):  # hardway install holds it
            pending = asyncio.ensure_future(login(auth, "bob", "bobs-password"))
            await asyncio.sleep(0.2)
            assert not pending.done()
        # released: the login goes on (within the wait's own 10 s limit, or it would
        # raise TimeoutError); how long bcrypt then takes depends on the machine's load
        assert await asyncio.wait_for(pending, 30) == "bob"

    asyncio.run(run())


# ---- the login form's error page --------------------------------------------------------

def login_handler(cls: type, tmp_path) -> Any:
    """A login handler of ``cls`` on a POST to /hub/login, with JupyterHub's templates and
    only what a request would compute (current user, xsrf token) filled in."""
    import os

    from jinja2 import Environment, FileSystemLoader
    from jupyterhub._data import DATA_FILES_PATH
    from tornado.httputil import HTTPHeaders, HTTPServerRequest
    from tornado.web import Application

    templates = os.path.join(DATA_FILES_PATH, "templates")
    env = Environment(loader=FileSystemLoader([templates]), autoescape=True)

    class Handler(cls):  # type: ignore[misc, valid-type]
        xsrf_token = b"xsrf-token"

        @property
        def template_namespace(self) -> dict[str, Any]:
            return {"base_url": "/hub/", "prefix": "/", "user": None,
                    "static_url": lambda path, include_version=True: "/hub/static/" + path,
                    "login_url": "/hub/login", "logout_url": "/hub/logout",
                    "version_hash": "", "services": [], "parsed_scopes": {},
                    "expanded_scopes": set(), "xsrf": "xsrf-token"}

    auth = FirstUseAuthenticator(dbm_path=str(tmp_path / "p.dbm"))
    app = Application([], login_url="/hub/login", authenticator=auth,
                      hub=SimpleNamespace(base_url="/hub/"), jinja2_env_sync=env,
                      jinja2_env=env, template_vars={})
    request = HTTPServerRequest(method="POST", uri="/hub/login?username=bob",
                                headers=HTTPHeaders({"Sec-Fetch-Mode": "navigate"}),
                                connection=mock.Mock())
    handler = Handler(app, request)
    handler._jupyterhub_user = None
    return handler


def error_page(handler: Any) -> str:
    """What the hub sends for an expired or tampered XSRF token on the login form:
    LoginHandler.check_xsrf_cookie raises this, BaseHandler.write_error renders it."""
    from tornado import web

    error = web.HTTPError(403, "Login form invalid or expired. Try again.")
    handler.write_error(403, exc_info=(web.HTTPError, error, None))
    return b"".join(handler._write_buffer).decode()


def test_login_form_errors_render_the_hub_message(tmp_path):
    page = error_page(login_handler(HardwayLoginHandler, tmp_path))
    assert "Login form invalid or expired. Try again." in page
    assert 'name="username"' in page and 'value="bob"' in page  # the form, refilled


def test_upstream_login_handler_cannot_render_them(tmp_path):
    with pytest.raises(TypeError, match="sync"):
        error_page(login_handler(CustomLoginHandler, tmp_path))


def test_a_too_short_first_password_message_still_wins(tmp_path):
    handler = login_handler(HardwayLoginHandler, tmp_path)
    handler.custom_login_error = "Password too short! Please choose a longer one."
    html = handler._render(login_error="Invalid username or password", username="bob",
                           sync=True)
    assert isinstance(html, str) and "Password too short!" in html


# ---- the admins' first passwords at install ---------------------------------------------

def install_passwords(paths, registry, ctx: Context | None = None,
                      config: str = "users:\n  admin: [alice]\n") -> tuple[list[str], Context]:
    write_config(paths, config)
    settings = load_settings(paths, registry)
    ctx = ctx or Context(paths)
    return registry.selected(settings)["auth"].post_install(settings, ctx), ctx


def db_of(paths) -> dict[str, bytes]:
    with dbm.open(str(paths.firstuse_db), "r") as db:
        return {k.decode(): db[k] for k in db.keys()}


def test_an_admin_without_a_password_gets_one_shown_once(paths, registry):
    changes, ctx = install_passwords(paths, registry)
    assert len(ctx.terminal_only) == 1
    m = PASSWORD_LINE.match(ctx.terminal_only[0])
    assert m, ctx.terminal_only
    name, password, url = m.groups()
    assert name == "alice" and url == "http://127.0.0.1"
    assert len(password) >= 16 and set(password) <= set(firstuse.ALPHABET)
    assert not set(password) & set("0O1lI")
    assert bcrypt.checkpw(password.encode(), db_of(paths)["alice"])
    assert changes == ["generated a first password for admin alice (shown once, below)"]
    assert not any(password in c for c in changes)
    # the upgrade re-runs install with the same flags: nothing generated, nothing said
    before = db_of(paths)
    again, ctx2 = install_passwords(paths, registry)
    assert again == [] and ctx2.terminal_only == [] and db_of(paths) == before


def test_the_line_names_the_public_address(paths, registry):
    _, ctx = install_passwords(
        paths, registry,
        config="public_url: https://hub.example.edu/\nusers:\n  admin: [alice]\n")
    m = PASSWORD_LINE.match(ctx.terminal_only[0])
    assert m and m.group(3) == "https://hub.example.edu"


def test_a_given_password_is_stored_and_never_resets_a_stored_one(paths, registry):
    ctx = Context(paths, admin_passwords={"alice": "given:pass word"})
    changes, ctx = install_passwords(paths, registry, ctx)
    assert changes == ["set the password of admin alice"] and ctx.terminal_only == []
    assert bcrypt.checkpw(b"given:pass word", db_of(paths)["alice"])
    # the same command from the shell history: the same password, nothing to say
    assert install_passwords(paths, registry, ctx)[0] == []
    # alice changed hers in the hub; the old command line comes back with another one
    with dbm.open(str(paths.firstuse_db), "w") as db:
        db[b"alice"] = bcrypt.hashpw(b"alices-own", bcrypt.gensalt(4))
    ctx = Context(paths, admin_passwords={"alice": "given:pass word"})
    changes, ctx = install_passwords(paths, registry, ctx)
    assert changes == ["kept the current password of admin alice (given --admin "
                       "alice:... ignored; change it in the hub)"]
    assert not any("given:pass word" in c for c in changes) and ctx.terminal_only == []
    assert bcrypt.checkpw(b"alices-own", db_of(paths)["alice"])


def test_users_passwords_are_never_touched(paths, registry):
    firstuse.FirstUse().install(None, Context(paths))  # type: ignore[arg-type]
    with dbm.open(str(paths.firstuse_db), "c", 0o600) as db:
        db[b"bob"] = b"bobs-hash"
    _, ctx = install_passwords(paths, registry,
                               config="users:\n  admin: [alice]\n  allowed: [bob]\n")
    assert db_of(paths)["bob"] == b"bobs-hash"
    assert [PASSWORD_LINE.match(line).group(1) for line in ctx.terminal_only] == ["alice"]


def test_no_admins_no_passwords(paths, registry):
    assert install_passwords(paths, registry, config="")[0] == []
    assert not paths.firstuse_db.parent.exists()


def test_a_password_bcrypt_cannot_hash_is_refused_naming_the_admin(paths, registry):
    ctx = Context(paths, admin_passwords={"alice": "x" * 73})
    with pytest.raises(ConfigError, match=r"--admin alice: .*longer than 72 bytes"):
        install_passwords(paths, registry, ctx)


def test_generated_passwords_are_long_and_unambiguous():
    seen = {firstuse.generate_password() for _ in range(50)}
    assert len(seen) == 50
    assert all(len(p) == 20 and set(p) <= set(firstuse.ALPHABET) for p in seen)
    assert len(firstuse.generate_password(40)) == 40
