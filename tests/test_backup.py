"""Backup archives: a round trip on a temporary root, the manifest's hashes refusing a
tampered archive, owners restored by name, the hardway_backup_paths hook, bad input."""

from __future__ import annotations

import dbm
import io
import json
import os
import sqlite3
import tarfile
import types
from pathlib import Path

import pytest
from conftest import write_config

from hardway.cli import main as cli
from hardway.errors import PluginError, UsageError
from hardway.ops import backup as bk
from hardway.paths import Paths
from hardway.plugin import hookimpl
from hardway.plugin.manager import Registry, make_manager

ME = os.geteuid()
MY_GROUP = os.getegid()


def make_hub(paths: Paths) -> None:
    """A hub's state as an install leaves it (no environments)."""
    write_config(paths, "users:\n  admin: [alice]\n")
    write_config(paths, "limits:\n  cpu: 2.0\n", "50-site.yaml")
    paths.secrets.mkdir(parents=True, mode=0o700)
    (paths.secrets / "jupyterhub_cookie_secret").write_text("c0ffee\n")
    (paths.secrets / "jupyterhub_cookie_secret").chmod(0o600)
    paths.acme_dir.mkdir(parents=True, mode=0o700)
    (paths.acme_dir / "acme-ca.json").write_text('{"account": 1}\n')
    (paths.acme_dir / "acme-ca.json").chmod(0o600)
    paths.firstuse_db.parent.mkdir(parents=True, mode=0o700)
    with dbm.open(str(paths.firstuse_db), "c", 0o600) as db:
        db[b"alice"] = b"$2b$hash"
    con = sqlite3.connect(paths.hub_db)
    con.execute("CREATE TABLE alembic_version (version_num TEXT)")
    con.execute("INSERT INTO alembic_version VALUES ('4621fec11365')")
    con.execute("CREATE TABLE users (name TEXT, admin INTEGER)")
    con.execute("INSERT INTO users VALUES ('alice', 1), ('bob', 0)")
    con.commit()
    con.close()
    paths.install_state.write_text('{"traefik": {"stamp": "this machine"}}\n')


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(root))] = (st.st_mode & 0o7777, data)
    return out


def users_here() -> tuple[dict[str, int], dict[str, int]]:
    return bk._ids()


def test_round_trip_on_a_temporary_root(tmp_path):
    src = Paths(tmp_path / "a")
    src.etc.mkdir(parents=True)
    make_hub(src)
    # the hub keeps writing while the backup runs: the copy is the sqlite backup API's
    written = bk.backup(src, tmp_path / "hub.tar.gz")
    assert written.revision == "4621fec11365"
    assert (written.path.stat().st_mode & 0o777) == 0o600
    archive = bk.check(written.path)
    m = archive.manifest
    assert m["hardway"] and m["db_revision"] == "4621fec11365" and m["homes"] is False
    names = set(archive.entries)
    assert "files/etc/hardway/config.yaml" in names
    assert "files/etc/hardway/config.d/50-site.yaml" in names
    assert "files/etc/hardway/.lock" not in names  # the writers' lock is never archived
    assert "files/var/lib/hardway/jupyterhub.sqlite" in names
    assert "files/var/lib/hardway/proxy/acme/acme-ca.json" in names
    # the firstuse plugin's hook put its password store in
    assert any(n.startswith("files/var/lib/hardway/firstuse/passwords.dbm") for n in names)
    for e in archive.entries.values():
        assert e["owner"] and e["group"], e  # by name, never a bare uid
        if e["type"] == "file":
            assert len(e["sha256"]) == 64

    dst = Paths(tmp_path / "b")
    dst.etc.mkdir(parents=True)
    write_config(dst, "users:\n  admin: [someone-else]\n")
    write_config(dst, "# left from this machine\n", "99-stale.yaml")
    dst.install_state.parent.mkdir(parents=True)
    dst.install_state.write_text('{"traefik": {"stamp": "machine b"}}\n')
    users, groups = users_here()
    bk.put_back(archive, dst.root, users, groups)
    before, after = tree(src.root), tree(dst.root)
    for rel, (mode, data) in before.items():
        if rel.endswith("install-state.json") or rel.endswith(".lock"):
            continue
        assert rel in after, rel
        if rel.endswith("jupyterhub.sqlite"):
            continue  # a copy made by sqlite, compared by content below
        assert after[rel] == (mode, data), rel
    # a settings tree is replaced, not merged: the stale drop-in is gone
    assert not (dst.config_d / "99-stale.yaml").exists()
    # install-state.json describes the machine it was made on: kept in the archive only
    assert "machine b" in dst.install_state.read_text()
    con = sqlite3.connect(dst.hub_db)
    assert con.execute("SELECT name, admin FROM users ORDER BY name").fetchall() == [
        ("alice", 1), ("bob", 0)]
    con.close()
    with dbm.open(str(dst.firstuse_db), "r") as db:
        assert db[b"alice"] == b"$2b$hash"


def rewrite(archive: Path, out: Path, change) -> Path:
    """A copy of ``archive`` with ``change(name, data) -> data`` applied to each file."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for m in src:
            f = src.extractfile(m) if m.isfile() else None
            data = f.read() if f else None
            if data is not None:
                data = change(m.name, data)
                m.size = len(data)
                dst.addfile(m, io.BytesIO(data))
            else:
                dst.addfile(m)
    return out


@pytest.fixture
def archive(tmp_path) -> Path:
    paths = Paths(tmp_path / "a")
    paths.etc.mkdir(parents=True)
    make_hub(paths)
    return bk.backup(paths, tmp_path / "hub.tar.gz").path


def test_a_tampered_member_is_refused_before_anything_changes(archive, tmp_path):
    bad = rewrite(archive, tmp_path / "bad.tar.gz", lambda name, data:
                  data.replace(b"alice", b"mallory") if name.endswith("config.yaml") else data)
    with pytest.raises(UsageError, match=r"config\.yaml does not match its sha256"):
        bk.check(bad)


def test_a_member_not_in_the_manifest_is_refused(archive, tmp_path):
    out = tmp_path / "extra.tar.gz"
    rewrite(archive, out, lambda name, data: data)
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo("files/etc/cron.d/evil")
        info.size = 3
        dst.addfile(info, io.BytesIO(b"x\n\n"))
    with pytest.raises(UsageError, match="not in its manifest"):
        bk.check(out)


def test_an_archive_from_a_newer_hardway_is_refused_in_one_line(archive, tmp_path):
    def newer(name, data):
        if name != bk.MANIFEST:
            return data
        m = json.loads(data)
        m["hardway"] = "99.0.0"
        return json.dumps(m).encode()

    with pytest.raises(UsageError) as e:
        bk.check(rewrite(archive, tmp_path / "newer.tar.gz", newer))
    assert "written by hardway 99.0.0, newer than this hardway" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [None, b"", b"not a tar at all", "truncated"])
def test_a_missing_or_damaged_archive_is_one_line(archive, tmp_path, content):
    path = tmp_path / "x.tar.gz"
    if content == "truncated":
        path.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as e:
        bk.check(path)
    assert "\n" not in str(e.value)


def test_member_names_outside_files_are_refused(tmp_path):
    for name in ("files/../etc/passwd", "/etc/passwd", "etc/passwd", "files"):
        with pytest.raises(UsageError):
            bk.target_of(tmp_path, name)
    assert bk.target_of(tmp_path, "files/home/x") == tmp_path / "home" / "x"


def test_owners_are_mapped_by_name_not_uid():
    users = {"root": 0, "jupyter-bob": 1007, "hardway-proxy": 998}
    groups = {"root": 0, "jupyter-bob": 1007, "hardway-proxy": 997}
    # same names, other numbers than on the machine the backup came from
    assert bk.owner_ids("jupyter-bob", "jupyter-bob", users, groups, (0, 0)) == (1007, 1007)
    assert bk.owner_ids("hardway-proxy", "hardway-proxy", users, groups, (0, 0)) == (998, 997)
    # a name this machine does not know: the default (the home's account), never a uid
    assert bk.owner_ids("ghost", None, users, groups, (1007, 1007)) == (1007, 1007)
    assert bk.owner_ids(None, "root", users, groups, (1007, 1007)) == (1007, 0)


def test_homes_go_back_to_their_accounts_by_name(tmp_path):
    if ME != 0:
        pytest.skip("giving files to other ids needs root")
    src = Paths(tmp_path / "a")
    src.etc.mkdir(parents=True)
    make_hub(src)
    home = src.root / "home" / "jupyter-bob"
    (home / "work").mkdir(parents=True)
    (home / "work" / "notes.txt").write_text("bob's notes\n")
    (home / "link").symlink_to("/etc/passwd")
    os.chown(home / "work" / "notes.txt", 0, 0)
    bob = bk.Account("jupyter-bob", "hardway hub user bob", "/home/jupyter-bob", "/bin/bash",
                     "jupyter-bob", admin=True)
    archive = bk.check(bk.backup(src, tmp_path / "h.tar.gz", homes=True, accounts=[bob]).path)
    assert archive.manifest["accounts"] == [bob.as_json()]
    assert archive.entries["files/home/jupyter-bob/work/notes.txt"]["owner"] == "root"
    dst = Paths(tmp_path / "b")
    dst.etc.mkdir(parents=True)
    # on the new machine jupyter-bob has another uid; "root" owns the note there too,
    # and entries whose owner is unknown here go to the account
    users, groups = users_here()
    users, groups = {**users, "jupyter-bob": 4321}, {**groups, "jupyter-bob": 4321}
    archive.manifest["entries"] = [
        {**e, "owner": "nobody-here"} if e["name"].endswith("/work") else e
        for e in archive.manifest["entries"]]
    bk.put_back(archive, dst.root, users, groups)
    restored = dst.root / "home" / "jupyter-bob"
    assert (restored / "work" / "notes.txt").read_text() == "bob's notes\n"
    assert (restored / "work" / "notes.txt").stat().st_uid == 0
    assert (restored / "work").stat().st_uid == 4321
    assert os.readlink(restored / "link") == "/etc/passwd"
    # links are made last: nothing was written through one
    assert (dst.root / "etc" / "passwd").exists() is False


def test_plugins_add_their_state_through_the_hook(tmp_path):
    """hardway_backup_paths: a plugin's state goes in; a broken plugin is named."""
    paths = Paths(tmp_path / "a")
    paths.etc.mkdir(parents=True)
    make_hub(paths)
    state = paths.state / "myplugin"
    state.mkdir()
    (state / "data.json").write_text("{}")

    def plugin(name, fn):
        mod = types.ModuleType(name)
        mod.hardway_backup_paths = hookimpl(fn)
        return mod

    pm = make_manager(load_entrypoints=False)
    pm.register(plugin("myplugin", lambda settings, paths: [paths.state / "myplugin"]),
                name="myplugin")
    registry = Registry(pm)
    from hardway.plugin.manager import load_settings

    settings = load_settings(paths, registry)
    roots = [t.path for t in bk.trees(paths, settings, registry)]
    assert state in roots and paths.firstuse_db.parent in roots

    pm.register(plugin("broken", lambda settings, paths: None), name="broken")
    with pytest.raises(PluginError, match="plugin 'broken' \\(hook hardway_backup_paths\\)"):
        bk.trees(paths, settings, Registry(pm))


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARDWAY_ROOT", str(tmp_path))
    (tmp_path / "etc" / "hardway").mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for argv in (["restore", str(tmp_path / "missing.tar.gz")], ["backup", "--bogus"],
                 ["restore"], ["backup", "-o", str(tmp_path / "no" / "such" / "x.tar.gz")],
                 ["uninstall"]):
        if os.geteuid() != 0 and argv[0] != "backup":
            continue
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing changed


def test_uninstall_without_yes_says_what_it_would_remove(tmp_path, monkeypatch, capsys):
    if os.geteuid() != 0:
        pytest.skip("uninstall needs root")
    monkeypatch.setenv("HARDWAY_ROOT", str(tmp_path))
    paths = Paths(tmp_path)
    paths.etc.mkdir(parents=True)
    make_hub(paths)
    assert cli.main(["uninstall", "--purge"]) == 2
    out, err = capsys.readouterr()
    assert f"remove {paths.state}/" in out and "final backup" in out
    assert "remove the unix accounts of hub users AND their homes" in out
    assert "uninstall --yes --purge" in err
    assert paths.hub_db.exists() and paths.config_file.exists()


def test_restore_refuses_settings_naming_a_plugin_not_installed_here(tmp_path):
    paths = Paths(tmp_path / "a")
    paths.etc.mkdir(parents=True)
    make_hub(paths)
    # a CA bundle the settings name is not on the new machine yet: that is no reason to
    # refuse (the archive brings it); an authenticator that is not installed is
    from hardway import tls

    ca = paths.etc / "ca.pem"
    ca.write_bytes(tls.make_self_signed(["ca.example.edu"]).cert_pem)
    write_config(paths, "https:\n  enabled: true\n  self_signed: false\n  letsencrypt:\n"
                 f"    domains: [hub.example.edu]\n    ca_certificates: [{ca}]\n",
                 "60-https.yaml")
    good = bk.check(bk.backup(paths, tmp_path / "good.tar.gz").path)
    ca.unlink()
    registry = Registry(make_manager(load_entrypoints=False))
    bk.validate_settings(good, Paths(tmp_path / "b"), registry)

    def other_auth(name, data):
        return data + b"auth:\n  type: saml\n" if name.endswith("/config.yaml") else data

    bad = tmp_path / "bad.tar.gz"
    rewrite(good.path, bad, other_auth)
    m = json.loads(tarfile.open(bad).extractfile(bk.MANIFEST).read())
    assert m  # the manifest is stale now: validate_settings alone is what is tested
    with pytest.raises(UsageError, match=r"auth\.type is 'saml'.*nothing was changed"):
        bk.validate_settings(bk.Archive(bad, m), Paths(tmp_path / "b"), registry)


class RecordingSystem:
    """Records commands instead of running them (no systemd here)."""

    def __init__(self):
        self.commands: list[list[str]] = []

    def run(self, cmd, check=True, **kw):
        self.commands.append(list(cmd))
        return types.SimpleNamespace(returncode=0, stdout="")

    def systemctl(self, *args, check=True):
        return self.run(["systemctl", *args], check=check)

    def user_exists(self, name):
        return False

    def group_exists(self, name):
        return False


def test_uninstall_backs_up_first_removes_everything_and_a_rerun_finishes(tmp_path):
    from hardway.ops import uninstall as un

    paths = Paths(tmp_path)
    paths.etc.mkdir(parents=True)
    make_hub(paths)
    for d in (paths.hub_venv / "bin", paths.cache / "uv", paths.log_dir):
        d.mkdir(parents=True)
    unit = paths.unit("jupyterhub.service")
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\n")
    stray = tmp_path / "srv" / "rendered-elsewhere.toml"  # a file the manifest lists
    stray.parent.mkdir()
    stray.write_text("x")
    paths.manifest.write_text(json.dumps({str(stray): "proxy", str(unit): "hub"}))
    paths.cli_link.parent.mkdir(parents=True)
    paths.cli_link.symlink_to(paths.hub_venv / "bin" / "hardway")
    system = RecordingSystem()
    said: list[str] = []
    final = un.uninstall(paths, system, purge=False, out=said.append, accounts=list)
    assert final is not None and final.parent == paths.backups
    assert final.name.endswith("-uninstall.tar.gz")
    assert (final.stat().st_mode & 0o777) == 0o600
    assert (paths.backups.stat().st_mode & 0o777) == 0o700
    # the archive was written before anything was removed: it holds the database
    assert "files/var/lib/hardway/jupyterhub.sqlite" in bk.check(final).entries
    for gone in (paths.state, paths.etc, paths.cache, paths.log_dir, paths.prefix, unit,
                 stray, paths.cli_link):
        assert not os.path.lexists(gone), gone
    assert ["systemctl", "disable", "--now", "jupyterhub.service"] in system.commands
    assert ["nft", "delete", "table", "inet", "hardway"] in system.commands
    assert any(f"final backup written to {final}" in line for line in said)
    # a second run (say the first was interrupted late): nothing to back up, says so
    said.clear()
    assert un.uninstall(paths, RecordingSystem(), purge=False, out=said.append,
                        accounts=list) is None
    assert any("no hub state left to back up" in line and str(final) in line for line in said)
    # --purge removes the final archives too
    un.uninstall(paths, RecordingSystem(), purge=True, out=said.append, accounts=list)
    assert not paths.backups.exists()


def test_a_postgresql_hub_database_goes_in_as_a_dump_and_is_checked(tmp_path, monkeypatch):
    """The archive side of a PostgreSQL hub database (the dump itself is made and loaded
    by a real PostgreSQL in integration-tests/test_upgrade_postgres.py)."""
    paths = Paths(tmp_path / "a")
    paths.etc.mkdir(parents=True)
    make_hub(paths)
    paths.hub_db.unlink()
    write_config(paths, "hub:\n  db_url: postgresql://hub:pw@127.0.0.1:5439/hub\n",
                 "60-db.yaml")
    dumped: list[str] = []

    def fake_dump(system, url, dest):
        dumped.append(url)
        dest.write_bytes(b"PGDMP custom format")
    monkeypatch.setattr(bk, "pg_dump", fake_dump)
    monkeypatch.setattr(bk, "pg_revision", lambda system, url: "be8ecf03ddac")
    written = bk.backup(paths, tmp_path / "pg.tar.gz")
    assert dumped == ["postgresql://hub:pw@127.0.0.1:5439/hub"]
    archive = bk.check(written.path)
    assert archive.manifest["pg_dump"] == bk.PG_DUMP and archive.manifest["db"] is None
    assert archive.manifest["db_revision"] == "be8ecf03ddac"
    assert archive.entries[bk.PG_DUMP]["mode"] == 0o600
    # restoring files never writes the dump anywhere under the root
    dst = tmp_path / "b"
    bk.put_back(archive, dst, *users_here())
    assert not list(dst.rglob("*.pgdump")) and not (dst / "database").exists()
    # and a changed dump is refused like any other member
    bad = rewrite(written.path, tmp_path / "bad.tar.gz", lambda name, data:
                  b"PGDMP evil" if name == bk.PG_DUMP else data)
    with pytest.raises(UsageError, match=r"database/hub\.pgdump does not match its sha256"):
        bk.check(bad)
