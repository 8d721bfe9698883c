"""The users' Docker image builder's pure parts (hardway_plugins.spawner.docker_image);
the build itself runs on a booted host (integration-tests/test_docker_engine.py)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from hardway_plugins.spawner import docker_image as di

STATUS = """\
Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
Depends: python3.11 (>= 3.11.2-1~), libpython3-stdlib (= 3.11.2-1+b1)
Pre-Depends: python3-minimal (= 3.11.2-1+b1)

Package: python3.11
Status: install ok installed
Architecture: amd64
Version: 3.11.2-6
Depends: mime-support | media-types, tzdata,
 libc6 (>= 2.36)

Package: python3-minimal
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
Depends: dpkg (>= 1.13.20)

Package: libpython3-stdlib
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1

Package: media-types
Status: install ok installed
Architecture: all
Version: 10.0.0

Package: tzdata-legacy
Status: install ok installed
Architecture: all
Version: 2024a
Provides: tzdata

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9

Package: dpkg
Status: install ok installed
Architecture: amd64
Version: 1.21.22

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1
"""


def test_the_status_file_lists_installed_packages_only():
    installed = di.parse_status(STATUS)
    assert "removed-one" not in installed
    assert installed["python3.11"].depends == [["mime-support", "media-types"], ["tzdata"],
                                               ["libc6"]]
    assert installed["python3"].depends[0] == ["python3-minimal"]  # Pre-Depends first


def test_the_closure_follows_installed_alternatives_and_providers_and_skips_dpkg():
    names = [p.name for p in di.closure(di.parse_status(STATUS), ["python3"])]
    assert names == ["libc6", "libpython3-stdlib", "media-types", "python3", "python3-minimal",
                     "python3.11", "tzdata-legacy"]


def test_a_package_not_installed_is_named():
    with pytest.raises(di.ImageError, match="not installed on this machine: git"):
        di.closure(di.parse_status(STATUS), ["python3", "git"])


def test_the_base_digest_follows_versions():
    installed = di.parse_status(STATUS)
    before = di.base_digest(di.closure(installed, ["python3"]))
    installed["libc6"].version = "2.36-9+deb12u1"
    assert di.base_digest(di.closure(installed, ["python3"])) != before


@pytest.mark.parametrize("path, wanted", [
    ("usr/bin/python3.11", True),
    ("usr/lib/x86_64-linux-gnu/libc.so.6", True),
    ("usr/share/doc/python3/copyright", False),
    ("usr/share/locale/de/LC_MESSAGES/coreutils.mo", False),
    ("etc/python3.11/sitecustomize.py", True),
    ("etc/ld.so.conf.d/x86_64-linux-gnu.conf", True),
    ("etc/shadow", False),
    ("etc/hardway/config.yaml", False),
    ("etc/ssh/sshd_config", False),
    ("etc/cron.daily/dpkg", False),
    ("var/lib/dpkg/status", False),
])
def test_only_allowlisted_paths_go_into_the_base(path: str, wanted: bool):
    assert di.wanted_path(path) is wanted


def test_forbidden_names_secret_paths_in_any_spelling():
    names = ["./etc/shadow", "/etc/gshadow-", "etc/hardway", "etc/hardway/secrets/x",
             "var/lib/hardway/hub/jupyterhub.sqlite", "root/.bash_history", "./.ssh/config",
             "home/jovyan/.ssh/authorized_keys", "opt/x/id_ed25519", "etc/ssl/private",
             "home/alice/notes.txt", "etc/machine-id",
             # allowed
             "./", "root", "home/jovyan", "home/jovyan/", "etc/passwd",
             "opt/hardway/envs/user-1/bin/python", "usr/share/ca-certificates/x.crt"]
    assert di.forbidden(names) == [
        "etc/shadow", "etc/gshadow-", "etc/hardway", "etc/hardway/secrets/x",
        "var/lib/hardway/hub/jupyterhub.sqlite", "root/.bash_history", ".ssh/config",
        "home/jovyan/.ssh/authorized_keys", "opt/x/id_ed25519", "etc/ssl/private",
        "home/alice/notes.txt", "etc/machine-id"]


def test_the_dockerfile_runs_the_environment_as_a_non_root_user():
    text = di.dockerfile("hardway-base:abc", "/opt/hardway/envs/user-1", "/opt/hardway/user")
    lines = text.splitlines()
    assert lines[0] == "FROM hardway-base:abc"
    assert "USER 1000:100" in lines
    assert lines[-1] == 'CMD ["jupyterhub-singleuser"]'
    assert "ENV PATH=/opt/hardway/user/bin:" in text


def test_the_base_tarball_holds_listed_files_and_generated_accounts(tmp_path: Path):
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_text("#!elf\n")
    (root / "usr/bin/python3").symlink_to("python3.11")
    (root / "bin").symlink_to("usr/bin")
    (root / "etc/hardway").mkdir(parents=True)
    (root / "etc/hardway/config.yaml").write_text("secret: yes\n")
    (root / "etc/shadow").write_text("root:$6$...\n")
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    info = tmp_path / "info"
    info.mkdir()
    # dpkg names /bin/python3 through the /bin link, and lists /etc files of its own
    (info / "python3.11:amd64.list").write_text(
        "/.\n/usr\n/usr/bin\n/usr/bin/python3.11\n/bin/python3\n/etc/shadow\n"
        "/etc/hardway/config.yaml\n/usr/share/doc/python3.11/README\n")
    pkg = di.Package("python3.11", "amd64", "1")
    tarball = tmp_path / "base.tar"
    members = di.write_base_tar(tarball, [pkg], root=root, info=info)
    assert "usr/bin/python3" in members and "usr/bin/python3.11" in members
    assert "bin/python3" not in members and "bin" in members
    assert di.forbidden(members) == []
    assert "etc/ssl/certs/ca-certificates.crt" in members
    with tarfile.open(tarball) as tar:
        assert tar.getmember("bin").issym()
        assert tar.getmember("usr/bin/python3").linkname == "python3.11"
        assert all(m.uid == 0 and m.gid == 0 for m in tar if not m.name.startswith("home/"))
        assert tar.getmember("home/jovyan").uid == di.UID
        assert tar.getmember("tmp").mode == 0o1777
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["root", "nobody", "jovyan"]


def test_the_environment_tarball_keeps_the_link_and_drops_the_install_marker(tmp_path):
    env = tmp_path / "opt/hardway/envs/user-1"
    (env / "bin").mkdir(parents=True)
    (env / "bin/jupyterhub-singleuser").write_text("#!/opt/hardway/envs/user-1/bin/python\n")
    (env / ".hardway-installing").write_text("")
    tarball = tmp_path / "env.tar"
    di.write_env_tar(tarball, env, tmp_path / "opt/hardway/user")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        link = tar.getmember(str(tmp_path / "opt/hardway/user").lstrip("/"))
    assert link.issym() and link.linkname == "envs/user-1"
    assert not any(n.endswith(".hardway-installing") for n in names)
    assert str(env / "bin/jupyterhub-singleuser").lstrip("/") in names
