from __future__ import annotations

from hardway.settings.configfile import ConfigDoc

TEXT = """\
# Our course hub. Ask Jo before changing anything.
users:
  admin:
    - alice   # the instructor
limits:
  memory: 1G  # enough for pandas
"""


def test_comments_survive_set_and_unset(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(TEXT)
    doc = ConfigDoc(p)
    doc.set("limits.cpu", 1.5)
    doc.set("auth.type", "firstuse")
    out = doc.dumps()
    assert "# Our course hub. Ask Jo before changing anything." in out
    assert "# the instructor" in out and "# enough for pandas" in out
    p.write_text(out)
    doc = ConfigDoc(p)
    assert doc.unset("limits.cpu")
    assert doc.unset("auth.type")
    assert doc.dumps() == TEXT


def test_unset_prunes_empty_sections_and_reports_absence(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("auth:\n  firstuse:\n    min_password_length: 10\n")
    doc = ConfigDoc(p)
    assert not doc.unset("auth.type")
    assert doc.unset("auth.firstuse.min_password_length")
    assert doc.data == {}


def test_string_that_looks_like_a_number_is_quoted(tmp_path):
    doc = ConfigDoc(tmp_path / "config.yaml")
    doc.set("users.allowed", ["0123"])
    assert "'0123'" in doc.dumps()


def test_new_file_gets_a_header(tmp_path):
    doc = ConfigDoc(tmp_path / "config.yaml")
    doc.set("users.admin", ["alice"])
    assert doc.dumps().startswith("# hardway settings")
