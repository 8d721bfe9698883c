"""auth pam: servers run as the accounts people log in with, dots and all (john.doe)."""

from __future__ import annotations

import asyncio
import pwd
import shutil
import subprocess
import types

import pytest
from hardway_plugins.spawner import accounts as acc
from hardway_plugins.spawner import systemd_spawner as ss
from hardway_plugins.spawner.systemd import EXISTING_NAME, unix_name

EXISTING = ["john.doe", "alice", "a_b", "a-b", "x1", "_svc", "J.Doe", "0day", "a" * 32,
            "first.middle.last-2"]


@pytest.mark.parametrize("name", EXISTING)
def test_an_existing_account_is_used_by_its_own_name(name):
    assert unix_name(name, "", existing=True) == name
    assert EXISTING_NAME.fullmatch(name)


@pytest.mark.parametrize("name", ["1234", "-x", ".hidden", "a" * 33, "a b", "a/b", "a:b",
                                  "élodie", "", "alice@example.edu", "x$"])
def test_names_no_account_can_safely_have_are_not_existing_names(name):
    assert not EXISTING_NAME.fullmatch(name)


def test_created_accounts_keep_their_naming():
    # what the spawner creates (every authenticator but pam) is unchanged
    assert unix_name("alice") == "jupyter-alice"
    assert unix_name("john.doe") != "jupyter-john.doe"
    assert unix_name("john.doe").startswith("jupyter-john-doe-")
    assert unix_name("john.doe", "") == unix_name("john.doe", "", existing=False)


def spawner(name: str, existing: bool = True) -> types.SimpleNamespace:
    user = types.SimpleNamespace(name=name, id=3, admin=False)
    s = types.SimpleNamespace(user=user, user_prefix="" if existing else "jupyter-",
                              existing_users_only=existing, admin_group="jupyterhub-admins")
    s.unix_username = ss.HardwaySystemdSpawner.unix_username.fget(s)
    s.synced: list[str] = []

    async def sync(unix: str) -> None:
        s.synced.append(unix)

    s._sync_admin_group = sync

    async def no_groups(unix: str) -> None:
        pass

    s._sync_unix_groups = no_groups
    return s


def passwd(accounts: dict[str, int]):
    def getpwnam(name: str) -> pwd.struct_passwd:
        if name not in accounts:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", accounts[name], accounts[name], "",
                                  f"/home/{name}", "/bin/bash"))
    return getpwnam


def test_the_spawner_runs_john_doe_as_john_doe(monkeypatch):
    monkeypatch.setattr(acc.pwd, "getpwnam", passwd({"john.doe": 1001}))
    s = spawner("john.doe")
    assert s.unix_username == "john.doe"
    asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(s))
    assert s.synced == ["john.doe"]
    # the unit it starts, and the user SystemdSpawner looks up (username_template)
    expand = ss.HardwaySystemdSpawner._expand_user_vars
    assert expand(s, "{USERNAME}-singleuser") == "john.doe-singleuser"
    assert expand(s, "{USERNAME}") == "john.doe"


def test_the_spawner_refuses_a_name_no_account_can_have(monkeypatch):
    monkeypatch.setattr(acc.pwd, "getpwnam", passwd({"1234": 1234}))
    with pytest.raises(RuntimeError, match="is not a unix account name"):
        asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(spawner("1234")))
    monkeypatch.setattr(acc.pwd, "getpwnam", passwd({}))
    with pytest.raises(RuntimeError, match=r"there is no unix account 'jane\.doe'"):
        asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(spawner("jane.doe")))
    monkeypatch.setattr(acc.pwd, "getpwnam", passwd({"daemon.x": 2}))
    with pytest.raises(RuntimeError, match="system account"):
        asyncio.run(ss.HardwaySystemdSpawner.ensure_unix_user(spawner("daemon.x")))


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="no systemd-escape")
@pytest.mark.parametrize("name", EXISTING)
def test_systemd_takes_the_unit_names_as_they_are(name):
    # systemd-run --unit NAME and systemctl NAME mangle a name the same way: a valid one
    # only gets ".service" added
    unit = f"{name}-singleuser"
    done = subprocess.run(["systemd-escape", "--mangle", unit], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == f"{unit}.service"
