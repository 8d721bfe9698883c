"""Courses' settings and rendered files (the nbgrader cycle on a booted host:
integration-tests/test_courses.py)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import write_config

from hardway.errors import ConfigError
from hardway.ops.install import ensure_generated_secrets, generated_secrets, render_now
from hardway.plugin.contract import Context
from hardway.plugin.manager import load_settings

TWO = "courses:\n  list:\n    data-101: Data Science 101\n    stats-2: ''\n"


def render(paths, registry):
    settings = load_settings(paths, registry)
    ctx = Context(paths, {"proxy_api_hash": "$2b$12$hash"}, pm=registry.pm)
    return settings, {f.path: f for f in render_now(settings, registry, ctx)}


def test_no_course_renders_nothing_of_nbgrader(paths, registry):
    write_config(paths, "")
    settings, files = render(paths, registry)
    config = json.loads(files[paths.hub_json].content)["config"]
    assert not any("course" in str(p.relative_to(paths.root)) or "nbgrader" in str(p)
                   for p in files)
    assert "load_groups" not in config["JupyterHub"]
    assert generated_secrets(registry, settings, paths) == [paths.doctor_token]  # no course's
    from hardway.ops.install import collect

    assert "nbgrader" not in collect(registry, settings, "user")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="courses need Python >= 3.11: "
                    "the refusal below is tested where it applies")
def test_each_course_gets_a_confined_formgrader_a_role_and_groups(paths, registry):
    write_config(paths, TWO)
    settings = load_settings(paths, registry)
    # the hardway_generated_secrets hook: one API token per course, made before rendering
    made = ensure_generated_secrets(registry, settings, paths)
    token = paths.secrets / "course-data-101.api_token"
    assert f"generated {token}" in made and (token.stat().st_mode & 0o777) == 0o600
    assert ensure_generated_secrets(registry, settings, paths) == []  # idempotent
    from hardway.ops.install import collect

    assert {"nbgrader", "nbgitpuller"} <= set(collect(registry, settings, "user"))
    assert "git" in collect(registry, settings, "apt")
    _, files = render(paths, registry)
    config = json.loads(files[paths.hub_json].content)["config"]
    services = {s["name"]: s for s in config["JupyterHub"]["services"]}
    fg = services["data-101"]
    assert fg["url"].startswith("http://127.0.0.1:") and fg["oauth_no_confirm"] is True
    assert fg["api_token"] == token.read_text().strip()
    roles = {r["name"]: r for r in config["JupyterHub"]["load_roles"]}
    # the narrowest scope that works: its own formgrader, nothing about users
    assert roles["formgrade-data-101"]["scopes"] == ["access:services!service=data-101"]
    assert roles["formgrade-data-101"]["groups"] == ["formgrade-data-101"]
    assert not any("admin" in s for r in roles.values() for s in r["scopes"])
    assert set(config["JupyterHub"]["load_groups"]) == {
        "nbgrader-data-101", "formgrade-data-101", "nbgrader-stats-2", "formgrade-stats-2"}
    assert config["UnixAccounts"]["unix_groups"]["nbgrader-stats-2"] == "course-stats-2"
    # the hardway_files hook: the unit, as the course's account, the token a credential
    unit = files[paths.unit("hardway-course-data-101.service")].content.decode()
    assert "User=grader-data-101" in unit
    assert f"LoadCredential=api-token:{token}" in unit
    assert token.read_text().strip() not in unit
    assert f"--ServerApp.port={fg['url'].rsplit(':', 1)[1]}" in unit
    assert "ProtectSystem=strict" in unit and "NoNewPrivileges=yes" in unit
    assert '"JUPYTERHUB_OAUTH_ACCESS_SCOPES=[\\"access:services!service=data-101\\"]"' in unit
    course = files[paths.state / "course-config" / "data-101" / "nbgrader_config.py"]
    assert "c.CourseDirectory.course_id = 'data-101'" in course.content.decode()
    everyone = files[paths.jupyter_etc / "nbgrader_config.py"].content.decode()
    assert f"c.Exchange.root = '{paths.state / 'exchange'}'" in everyone
    assert "JupyterHubAuthPlugin" in everyone


@pytest.mark.parametrize("text, needle", [
    ("courses:\n  list:\n    Data101: x\n", "'Data101' is not a course id"),
    ("courses:\n  list:\n    d: x\n", "'d' is not a course id"),
    ("courses:\n  list:\n    ok-1: \"two\\nlines\"\n", "ok-1: expected a title on one line"),
])
def test_bad_course_ids_are_refused_naming_the_key(paths, registry, text, needle):
    write_config(paths, text)
    with pytest.raises(ConfigError) as e:
        load_settings(paths, registry)
    assert "courses.list" in str(e.value) and needle in str(e.value), str(e.value)


def test_courses_are_refused_where_python_is_too_old(paths, registry, monkeypatch):
    from hardway_plugins.courses import courses

    monkeypatch.setattr(courses, "MIN_PYTHON", (sys.version_info.major,
                                                sys.version_info.minor + 1))
    write_config(paths, TWO)
    settings = load_settings(paths, registry)
    with pytest.raises(ConfigError) as e:
        courses.hardway_user_packages(settings)
    assert str(e.value).startswith("courses.list: nbgrader needs Python >= ")
    assert "cannot be added here" in str(e.value)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="courses need Python >= 3.11")
def test_containers_get_the_exchange_only_under_the_docker_spawner(paths, registry):
    write_config(paths, TWO)
    ensure_generated_secrets(registry, load_settings(paths, registry), paths)
    _, files = render(paths, registry)
    config = json.loads(files[paths.hub_json].content)["config"]
    # a class the hub does not use is a config JupyterHub refuses (hardway checks it)
    assert "HardwayDockerSpawner" not in config
    write_config(paths, TWO + "spawner:\n  type: docker\n")
    _, files = render(paths, registry)
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["HardwayDockerSpawner"]["shared_paths"] == {
        str(paths.state / "exchange"): "rw", str(paths.jupyter_etc / "nbgrader_config.py"): "ro"}
    assert config["HardwayDockerSpawner"]["user_prefix"] == "jupyter-"  # merged, not replaced


def test_backups_hold_the_courses_and_the_exchange(paths, registry):
    from hardway_plugins.courses import courses

    write_config(paths, "")
    assert courses.hardway_backup_paths(load_settings(paths, registry), paths) == []
    write_config(paths, TWO)
    assert courses.hardway_backup_paths(load_settings(paths, registry), paths) == [
        paths.state / "courses", paths.state / "exchange"]


def test_an_nbgitpuller_link_opens_the_repository_in_her_server():
    from urllib.parse import parse_qs, urlsplit

    from hardway_plugins.courses.courses import git_pull_link

    link = git_pull_link("https://hub.example.edu/", "https://git.example.edu/t/lesson-1.git",
                         "main", "intro.ipynb")
    parts = urlsplit(link)
    assert parts.path == "/hub/user-redirect/git-pull"
    assert parse_qs(parts.query) == {
        "repo": ["https://git.example.edu/t/lesson-1.git"], "branch": ["main"],
        "targetpath": ["lesson-1"], "urlpath": ["lab/tree/lesson-1/intro.ipynb"]}
    assert "branch=" not in git_pull_link("http://127.0.0.1/", "git://127.0.0.1/l.git")
    with pytest.raises(ConfigError, match="is not a git URL"):
        git_pull_link("http://h/", "not a url")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="courses need Python >= 3.11")
def test_grades_are_sent_on_a_timer_only_when_asked(paths, registry):
    write_config(paths, TWO)
    ensure_generated_secrets(registry, load_settings(paths, registry), paths)
    _, files = render(paths, registry)
    assert paths.unit("hardway-course-grades.timer") not in files
    write_config(paths, TWO.replace("courses:\n", "courses:\n  grades_every: 30\n"))
    _, files = render(paths, registry)
    timer = files[paths.unit("hardway-course-grades.timer")]
    service = files[paths.unit("hardway-course-grades.service")]
    assert "OnUnitInactiveSec=30min" in timer.content.decode()
    assert f"ExecStart={paths.cli_link} course grades --all\n" in service.content.decode()
    # a change restarts the timer, never runs the job at a reload
    assert timer.component == service.component == "hardway-course-grades.timer"
    write_config(paths, TWO.replace("courses:\n", "courses:\n  grades_every: -5\n"))
    with pytest.raises(ConfigError, match=r"courses\.grades_every"):
        load_settings(paths, registry)


def test_the_lti13_tool_gets_its_own_signing_key_and_serves_its_public_half(paths, registry):
    write_config(paths, "auth:\n  type: lti13\n  lti13:\n    issuer: https://lms.example.edu\n"
                        "    client_id: ['tool-1']\n"
                        "    authorize_url: https://lms.example.edu/authorize\n"
                        "    jwks_url: https://lms.example.edu/jwks\n")
    settings = load_settings(paths, registry)
    key = paths.secrets / "lti13-tool-key.pem"
    assert key in generated_secrets(registry, settings, paths)
    ensure_generated_secrets(registry, settings, paths)
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600
    _, files = render(paths, registry)
    config = json.loads(files[paths.hub_json].content)["config"]
    (public,) = config["HardwayLTI13Authenticator"]["tool_jwks"]["keys"]
    assert public["kty"] == "RSA" and "d" not in public
    assert config["HardwayLTI13Authenticator"]["grades_db_path"].endswith(
        "/hub/lti-grades.sqlite")
    before = key.read_bytes()
    ensure_generated_secrets(registry, settings, paths)  # kept: the LMS has its public half
    assert key.read_bytes() == before


def test_course_requests_are_watched_only_when_allowed_under_lti(paths, registry):
    lti = ("auth:\n  type: lti11\n  lti11:\n    consumers:\n      k: s\n")
    write_config(paths, lti)
    _, files = render(paths, registry)
    assert paths.unit("hardway-course-requests.path") not in files
    write_config(paths, lti + "courses:\n  lti_create: true\n")
    _, files = render(paths, registry)
    unit = files[paths.unit("hardway-course-requests.path")].content.decode()
    assert f"DirectoryNotEmpty={paths.hub_dir / 'course-requests'}\n" in unit
    job = files[paths.unit("hardway-course-requests.service")].content.decode()
    assert f"ExecStart={paths.cli_link} course requests\n" in job
    config = json.loads(files[paths.hub_json].content)["config"]
    assert config["LtiCourses"] == {"create_requests_dir": str(paths.hub_dir /
                                                                "course-requests")}
    # not under another authenticator: no launch could ask
    write_config(paths, "courses:\n  lti_create: true\n")
    _, files = render(paths, registry)
    assert paths.unit("hardway-course-requests.path") not in files
