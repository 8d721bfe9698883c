"""Safe defaults that can be checked without a machine: the memory limit chosen from the
machine's memory, the nftables table confining users, root refusing planted links, and
environments nobody but root can write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hardway_plugins.spawner.systemd import nft_ruleset

from hardway.apply.files import apply_files, lock_down, secure_owner
from hardway.errors import ConfigError
from hardway.plugin.contract import File
from hardway.plugin.manager import Registry, load_settings, make_manager
from hardway.render import memory_limit

GIB = 1 << 30


@pytest.mark.parametrize(("value", "total", "expected"), [
    ("auto", 24 * GIB, "6144M"),       # a quarter
    ("auto", 1 * GIB, "512M"),         # never below 512M
    ("auto", 256 * GIB, "16384M"),     # never above 16G
    ("auto", 0, "2G"),                 # memory unknown
    ("2G", 24 * GIB, "2G"),            # an explicit size wins
    ("none", 24 * GIB, None),          # explicitly no limit
    (None, 24 * GIB, None),
])
def test_memory_limit(value, total, expected):
    assert memory_limit(value, total) == expected


def settings_from(tmp_path: Path, text: str):
    from hardway.paths import Paths

    paths = Paths(tmp_path)
    paths.etc.mkdir(parents=True)
    paths.config_file.write_text(text)
    registry = Registry(make_manager())
    return load_settings(paths, registry)


def test_nft_ruleset_denies_metadata_and_the_proxy_api_to_user_uids(tmp_path):
    ruleset = nft_ruleset(settings_from(tmp_path, "")).decode()
    # atomic reload: the table is created, deleted and defined again in one file
    assert ruleset.index("delete table inet hardway") < ruleset.index("table inet hardway {")
    assert "meta skuid 1000-60000 ip daddr { 169.254.0.0/16 } meta l4proto tcp" in ruleset
    assert "ip6 daddr { fe80::/10, fd00:ec2::254/128 }" in ruleset
    assert "ip daddr 127.0.0.0/8 tcp dport 8099 counter reject with tcp reset" in ruleset


def test_nft_ruleset_follows_the_settings(tmp_path):
    s = settings_from(tmp_path, "limits:\n  deny_networks: ['10.0.0.0/8']\n"
                                "proxy:\n  traefik:\n    api_port: 9999\n")
    ruleset = nft_ruleset(s).decode()
    assert "{ 10.0.0.0/8 }" in ruleset and "169.254" not in ruleset and "ip6 daddr {" not in ruleset
    assert "dport 9999" in ruleset


def test_a_bad_network_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"limits.deny_networks: '300.1.1.1/8' is not an IP"):
        settings_from(tmp_path, "limits:\n  deny_networks: ['300.1.1.1/8']\n")


def test_secure_owner_refuses_a_planted_link(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("secret")
    os.chmod(target, 0o640)
    link = tmp_path / "acme-evil.json"
    link.symlink_to(target)
    said = secure_owner(link, 0o600, os.getuid(), os.getgid())
    assert said == f"refused {link}: a symbolic link (to {target}), not followed; remove it"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    regular = tmp_path / "acme-real.json"
    regular.write_text("{}")
    os.chmod(regular, 0o644)
    assert "made" in secure_owner(regular, 0o600, os.getuid(), os.getgid())
    assert stat.S_IMODE(regular.stat().st_mode) == 0o600
    assert secure_owner(regular, 0o600, os.getuid(), os.getgid()) is None


def test_a_link_where_a_rendered_file_belongs_is_replaced_not_followed(tmp_path):
    target = tmp_path / "shadow"
    target.write_bytes(b"secret")
    path = tmp_path / "rules" / "00-hardway.toml"
    path.parent.mkdir()
    path.symlink_to(target)
    changed = apply_files([File(path, b"new = 1\n", 0o640)], None)
    assert "a symbolic link to" in changed[0][1] and "refused to follow it" in changed[0][1]
    assert target.read_bytes() == b"secret"
    assert not path.is_symlink() and path.read_bytes() == b"new = 1\n"


def test_lock_down_clears_write_bits_and_drops_lock_files(tmp_path):
    env = tmp_path / "user"
    (env / "lib").mkdir(parents=True)
    lock = env / ".lock"
    lock.write_text("")
    os.chmod(lock, 0o666)
    shared = env / "lib" / "data"
    shared.write_text("x")
    os.chmod(shared, 0o666)
    os.chmod(env / "lib", 0o777)
    outside = tmp_path / "outside"
    outside.write_text("y")
    os.chmod(outside, 0o666)
    (env / "lib" / "link").symlink_to(outside)
    changes = lock_down(env)
    assert not lock.exists()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE((env / "lib").stat().st_mode) == 0o755
    assert stat.S_IMODE(outside.stat().st_mode) == 0o666  # a link is never followed
    assert any("removed 1 lock file" in c for c in changes)
    assert lock_down(env) == []  # nothing left to do
