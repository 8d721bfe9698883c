"""Code that runs in the hub process and at install time, with plugins listening."""

from __future__ import annotations

import dbm
import json
import types
from pathlib import Path

import bcrypt
import pytest

from hardway.hubside import config as hub
from hardway.ops.install import post_install_step, render_now
from hardway.plugin import hookimpl
from hardway.plugin.contract import Context
from hardway.plugin.manager import Registry, load_settings, make_manager

calls: list[tuple[str, dict]] = []


def listener() -> types.ModuleType:
    mod = types.ModuleType("listener")

    @hookimpl
    def hardway_hub_config_object(c, settings):
        calls.append(("hub_config_object", {"c": c, "port": settings["http.port"]}))
        c.JupyterHub.template_vars = {"from": "plugin"}

    @hookimpl
    def hardway_post_install(settings, ctx):
        calls.append(("post_install", {"ctx": ctx}))

    @hookimpl
    def hardway_new_user(unix_name, hub_name, admin, settings):
        calls.append(("new_user", {"unix": unix_name, "hub": hub_name, "admin": admin}))

    mod.hardway_hub_config_object = hardway_hub_config_object
    mod.hardway_post_install = hardway_post_install
    mod.hardway_new_user = hardway_new_user
    return mod


def manager(load_entrypoints=False):
    pm = make_manager(load_entrypoints=False)
    pm.register(listener(), name="listener")
    return pm


@pytest.fixture(autouse=True)
def clear():
    calls.clear()
    yield
    hub.current = None


def rendered(paths) -> Path:
    registry = Registry(manager())
    settings = load_settings(paths, registry)
    for f in render_now(settings, registry, Context(paths, {"proxy_api_hash": "h"})):
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_bytes(f.content)
    return paths.hub_json


def test_configure_applies_hub_json_then_hardway_hub_config_object(paths, monkeypatch):
    from traitlets.config import Config

    path = rendered(paths)
    monkeypatch.setattr(hub, "make_manager", manager)
    c = Config()
    hub.configure(c, str(path))
    assert c.JupyterHub.cleanup_servers is False
    assert c.Proxy.should_start is False
    assert c.JupyterHub.template_vars == {"from": "plugin"}
    assert calls[0][0] == "hub_config_object" and calls[0][1]["port"] == 80
    assert hub.current is not None
    assert json.loads(path.read_text())["settings"]["http.port"] == 80


def test_post_install_seeds_admin_passwords_and_calls_hardway_post_install(paths):
    registry = Registry(manager())
    settings = load_settings(paths, registry)
    ctx = Context(paths, admin_passwords={"alice": "pa:ss:word"})
    changes = post_install_step(registry, settings, ctx)
    assert changes == ["set the password of admin alice"]
    assert calls == [("post_install", {"ctx": ctx})]
    with dbm.open(str(paths.firstuse_db), "r") as db:
        assert bcrypt.checkpw(b"pa:ss:word", db[b"alice"])
    assert post_install_step(registry, settings, ctx) == []  # idempotent
    ctx.admin_passwords["alice"] = "another-one"
    # a re-run never resets a password the admin has (it may be one she chose since)
    assert post_install_step(registry, settings, ctx) == [
        "kept the current password of admin alice (given --admin alice:... ignored; "
        "change it in the hub)"]
    assert (paths.firstuse_db.parent.stat().st_mode & 0o777) == 0o700


def test_firstuse_install_makes_its_database_directory(paths):
    """Without it, the first login of a hub installed with --admin NAME (no password)
    failed with a 500: firstuse opens its dbm file but creates no directory."""
    registry = Registry(manager())
    settings = load_settings(paths, registry)
    choice = registry.selected(settings)["auth"]
    assert choice.install(settings, Context(paths)) == [f"created {paths.firstuse_db.parent}"]
    assert (paths.firstuse_db.parent.stat().st_mode & 0o777) == 0o700
    assert choice.install(settings, Context(paths)) == []


def test_spawner_creates_the_unix_user_once_and_calls_hardway_new_user(monkeypatch, paths):
    import asyncio
    import pwd

    from hardway_plugins.spawner import accounts as acc
    from hardway_plugins.spawner import systemd_spawner as ss

    rendered(paths)
    monkeypatch.setattr(hub, "make_manager", manager)
    hub.current = hub.load_rendered(paths.hub_json)
    created: dict[str, object] = {}
    commands: list[tuple[str, ...]] = []

    def getpwnam(name):
        if name not in created:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", 1500, 1500, created[name], "/home/" + name,
                                  "/bin/bash"))

    async def run(self, *cmd):
        commands.append(cmd)
        if cmd[0] == "useradd":
            created[cmd[-1]] = cmd[cmd.index("--comment") + 1]

    monkeypatch.setattr(acc.pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(acc.os, "chmod", lambda *a: None)
    monkeypatch.setattr(ss.HardwaySystemdSpawner, "_run", run)
    monkeypatch.setattr(acc, "_group_members", lambda g: [])
    user = types.SimpleNamespace(name="alice@example.edu", id=7, admin=True)
    spawner = types.SimpleNamespace(user=user, user_prefix="jupyter-", home_base="/home",
                                    admin_group="jupyterhub-admins", existing_users_only=False,
                                    log=types.SimpleNamespace(info=lambda *a: None,
                                                           warning=lambda *a: None))
    spawner.unix_username = acc.unix_name(user.name, "jupyter-")
    spawner._run = lambda *cmd: run(spawner, *cmd)
    spawner._sync_admin_group = lambda name: ss.HardwaySystemdSpawner._sync_admin_group(
        spawner, name)
    spawner.unix_groups = {}
    spawner._sync_unix_groups = lambda name: ss.HardwaySystemdSpawner._sync_unix_groups(
        spawner, name)
    asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(spawner))
    asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(spawner))
    assert [c[0] for c in commands] == ["useradd", "usermod", "usermod"]
    assert calls == [("new_user", {"unix": spawner.unix_username, "hub": "alice@example.edu",
                                   "admin": True})]
    # a unix account that belongs to another hub name is never reused
    user.name = "mallory"
    created[spawner.unix_username] = ss.owner_comment("someone-else")
    with pytest.raises(RuntimeError, match="refusing to start"):
        asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(spawner))


def test_starts_queue_one_per_cpu_and_a_slow_one_gives_its_place_up(monkeypatch):
    """Both spawner classes start through StartQueue.queued (systemd units, containers)."""
    import asyncio
    import types

    from hardway_plugins.spawner import starting

    monkeypatch.setattr(starting, "_starting", None)
    ready: dict[str, asyncio.Event] = {}
    order: list[str] = []

    class Fake(starting.StartQueue):
        user = types.SimpleNamespace(name="alice")

        async def wait_for_port(self, ip: str, port: int) -> None:
            await ready[ip].wait()

    async def run() -> None:
        q = Fake(max_starting=2, max_starting_wait=1)

        def start_of(name: str):
            async def start() -> tuple[str, int]:
                order.append(name)
                return name, 8888
            return start

        async def one(name: str) -> object:
            return await q.queued(start_of(name))

        for n in "abcd":
            ready[n] = asyncio.Event()
        tasks = [asyncio.create_task(one(n)) for n in "abcd"]
        await asyncio.sleep(0.2)
        assert order == ["a", "b"]  # two places: c and d wait
        ready["a"].set()
        await asyncio.sleep(0.2)
        assert order == ["a", "b", "c"]
        # b never gets ready: after max_starting_wait its place goes to d
        await asyncio.sleep(1.2)
        assert order == ["a", "b", "c", "d"]
        for n in "bcd":
            ready[n].set()
        assert [await t for t in tasks] == [(n, 8888) for n in "abcd"]

    asyncio.run(run())


def test_a_server_that_dies_while_starting_fails_the_start_saying_why(monkeypatch):
    """No wait for the hub's HTTP timeout and a bare status: the start fails within a
    second with the spawner's account of why (on a booted host with a real container:
    integration-tests/test_docker_engine.py test_11d)."""
    import asyncio
    import socket
    import time
    import types

    from hardway_plugins.spawner import starting
    from jupyterhub.spawner import SpawnException

    monkeypatch.setattr(starting, "_starting", None)
    monkeypatch.setattr(starting, "_stops", {})
    polls: list[str] = []

    class Base:
        async def poll(self):
            polls.append("poll")
            return "ExitCode=1"

    class Dying(starting.StartQueue, Base):
        http_timeout = 30
        user = types.SimpleNamespace(name="alice")

        async def describe_stop(self, status):
            return f"it exited with status 1 ({status}). Its last output: ImportError"

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def start():
        return "127.0.0.1", port

    q = Dying()
    t0 = time.monotonic()
    with pytest.raises(SpawnException) as e:
        asyncio.run(q.queued(start))
    assert time.monotonic() - t0 < 5
    assert e.value.jupyterhub_message == (
        "Your server stopped while it was starting: it exited with status 1 "
        "(ExitCode=1). Its last output: ImportError")
    # the reason is kept for the "not running" page, asked of docker once per start
    n = len(polls)
    asyncio.run(q.poll())
    assert len(polls) == n + 1 and q.last_stop.startswith("it exited with status 1")
    # kept beyond the spawner object (the hub drops it once the server is stopped) for
    # the "not running" page, until her next start
    assert starting.StopNotes.of(types.SimpleNamespace(name="alice"), "") == \
        f"Your server stopped by itself: {q.last_stop}"
    assert starting.StopNotes.of(None) == ""

    async def nothing():
        return None

    asyncio.run(q.queued(nothing))  # her next start clears it
    assert starting.StopNotes.of(types.SimpleNamespace(name="alice"), "") == ""


def test_a_users_hub_groups_decide_the_course_unix_groups_of_her_account(monkeypatch):
    """Courses: the exchange's course directories belong to a unix group; her account is
    in exactly those her hub groups map to, at each server start."""
    import asyncio
    import types

    from hardway_plugins.spawner import accounts as acc
    from hardway_plugins.spawner import systemd_spawner as ss

    members = {"course-a": [], "course-b": ["jupyter-ana"], "course-c": []}
    monkeypatch.setattr(acc, "_group_members", lambda g: members[g])
    commands: list[tuple[str, ...]] = []

    async def run(*cmd: str) -> None:
        commands.append(cmd)

    groups = [types.SimpleNamespace(name="nbgrader-a"), types.SimpleNamespace(name="other")]
    spawner = types.SimpleNamespace(
        user=types.SimpleNamespace(name="ana", groups=groups), _run=run,
        unix_groups={"nbgrader-a": "course-a", "formgrade-a": "course-a",
                     "nbgrader-b": "course-b", "nbgrader-c": "course-c"})
    spawner.wanted_unix_groups = lambda: ss.HardwaySystemdSpawner.wanted_unix_groups(spawner)
    assert spawner.wanted_unix_groups() == {"course-a"}
    asyncio.run(ss.HardwaySystemdSpawner._sync_unix_groups(spawner, "jupyter-ana"))
    assert commands == [("usermod", "--append", "--groups", "course-a", "jupyter-ana"),
                        ("gpasswd", "--delete", "jupyter-ana", "course-b")]
