"""The nbgrader cycle's parts the course tests share (systemd spawner: test_courses.py;
docker spawner: test_docker_engine.py): an autogradable notebook, and the code a
student's kernel runs with nbgrader's own command line to fetch, solve and submit it,
then fetch the feedback."""

from __future__ import annotations

from typing import Any

#: an autogradable notebook: a solution cell and a test cell worth 2 points
NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "cells": [
        {"cell_type": "code", "id": "answer", "execution_count": None, "outputs": [],
         "source": "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n"
                   "    ### END SOLUTION\n",
         "metadata": {"nbgrader": {"grade": False, "solution": True, "locked": False,
                                   "grade_id": "add_answer", "schema_version": 3}}},
        {"cell_type": "code", "id": "tests", "execution_count": None, "outputs": [],
         "source": "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n",
         "metadata": {"nbgrader": {"grade": True, "solution": False, "locked": True,
                                   "points": 2, "grade_id": "add_tests",
                                   "schema_version": 3}}},
    ],
}
#: nbgrader's own command line, in the user's kernel, from her home
NBGRADER = """
import os, subprocess, sys
def nbgrader(*args):
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args], capture_output=True,
                       text=True, cwd=os.path.expanduser("~"), timeout=300)
    return {"rc": r.returncode, "out": (r.stdout + r.stderr)[-3000:]}
"""


def solve(cid: str) -> str:
    """Fetch ps1, write the answer, submit; prints {"fetch": ..., "submit": ...}."""
    return NBGRADER + f"""
import json, nbformat
got = {{"fetch": nbgrader("fetch_assignment", "ps1", "--course", "{cid}")}}
path = os.path.expanduser("~/{cid}/ps1/problem.ipynb")
nb = nbformat.read(path, as_version=4)
for cell in nb.cells:
    if cell.metadata.get("nbgrader", {{}}).get("grade_id") == "add_answer":
        cell.source = "def add(a, b):\\n    return a + b\\n"
nbformat.write(nb, path)
got["submit"] = nbgrader("submit", "ps1", "--course", "{cid}")
print(json.dumps(got))
"""


def feedback(cid: str) -> str:
    """Fetch ps1's feedback; prints {"rc", "out", "files": the feedback pages}."""
    return NBGRADER + f"""
import glob, json
got = nbgrader("fetch_feedback", "ps1", "--course", "{cid}")
got["files"] = sorted(glob.glob(os.path.expanduser("~/{cid}/ps1/feedback/*/problem.html")))
print(json.dumps(got))
"""


def step_succeeded(r: Any) -> bool:
    """A formgrader API step (assign, release, collect, autograde...) answered success."""
    try:
        return r.status_code == 200 and r.json().get("success") is True
    except ValueError:  # not JSON: an error page
        return False


def write_source(u: Any, cid: str) -> None:
    """``u`` (a hubclient.HubUser in the course's formgrade group) writes ps1's source
    notebook into the course's files through the formgrader server's contents API."""
    for path in ("course/source", "course/source/ps1"):
        r = u.api("PUT", f"/services/{cid}/api/contents/{path}", json={"type": "directory"})
        assert r.status_code in (200, 201), (path, r.status_code, r.text[:300])
    r = u.api("PUT", f"/services/{cid}/api/contents/course/source/ps1/problem.ipynb",
              json={"type": "notebook", "format": "json", "content": NOTEBOOK})
    assert r.status_code in (200, 201), (r.status_code, r.text[:300])
