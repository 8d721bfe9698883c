"""The layering in .importlinter holds, and the check is one that can fail.

docs/architecture.md explains the layers; run-tests.sh runs ``lint-imports`` as well.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
BOOTSTRAP = REPO / "bootstrap" / "bootstrap.py"

CONTRACTS = (
    "hardway's layers: each imports only from the layers below it",
    "built-in plugins never import the CLI or the operations",
    "built-in plugins of one kind never reach into another kind",
    "no import cycles between the modules of any package",
)


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install requirements-dev.txt")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_pass_on_this_checkout():
    proc = lint_imports(REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for name in CONTRACTS:
        assert f"{name} KEPT" in out, out
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out, out


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """hardway/ and plugins/ (as hardway_plugins/) and .importlinter in a temp dir."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "hardway", tmp_path / "hardway", ignore=ignore)
    shutil.copytree(REPO / "plugins", tmp_path / "hardway_plugins", ignore=ignore)
    shutil.copyfile(REPO / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def copy_env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root)}


def test_the_copy_is_what_gets_analysed(copy):
    """The editable install must not shadow the copy: else a planted violation would go
    unseen and the test below would pass for the wrong reason."""
    where = subprocess.run(
        [sys.executable, "-c", "import hardway, hardway_plugins; "
         "print(hardway.__file__); print(hardway_plugins.__file__)"],
        cwd=copy, env=copy_env(copy), capture_output=True, text=True, check=True)
    assert where.stdout.split() == [str(copy / "hardway" / "__init__.py"),
                                    str(copy / "hardway_plugins" / "__init__.py")]
    proc = lint_imports(copy, copy_env(copy))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the unchanged copy passes


def test_a_planted_violation_fails(copy):
    render = copy / "hardway" / "render" / "__init__.py"
    text = render.read_text()
    anchor = "import tomlkit\n"
    assert anchor in text
    render.write_text(text.replace(anchor, anchor + "\nfrom hardway.apply import files\n", 1))
    line = render.read_text().splitlines().index("from hardway.apply import files") + 1
    proc = lint_imports(copy, copy_env(copy))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"{CONTRACTS[0]} BROKEN" in out, out
    assert "hardway.render is not allowed to import hardway.apply" in out, out
    assert f"hardway.render -> hardway.apply.files (l.{line})" in out, out
    # only the layers contract: the others still hold
    for name in CONTRACTS[1:]:
        assert f"{name} KEPT" in out, out


def test_a_plugin_importing_the_operations_fails(copy):
    pam = copy / "hardway_plugins" / "auth" / "pam.py"
    pam.write_text(pam.read_text() + "\nfrom hardway.ops.install import read_state\n")
    proc = lint_imports(copy, copy_env(copy))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"{CONTRACTS[1]} BROKEN" in out, out
    assert "hardway_plugins.auth.pam -> hardway.ops.install" in out, out


def hardway_imports(source: str) -> list[str]:
    """Every module of hardway (or its built-in plugins) that ``source`` imports: import
    statements at any depth, ``__import__`` and ``importlib.import_module`` of a literal."""
    ours = ("hardway", "hardway_plugins")
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: bootstrap.py is no package, so this is wrong anyway
                found.append("." * node.level + (node.module or ""))
                continue
            names = [node.module or ""]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute)
                       and node.func.attr == "import_module"))):
            names = [node.args[0].value]
        found += [n for n in names if n.split(".")[0] in ours]
    return found


def test_bootstrap_imports_nothing_from_hardway():
    assert hardway_imports(BOOTSTRAP.read_text()) == []


@pytest.mark.parametrize("planted", [
    "import hardway",
    "from hardway.ops import install",
    "def f():\n    from hardway_plugins.auth import pam\n",
    "import importlib\nimportlib.import_module('hardway.cli.main')",
    "__import__('hardway.settings')",
    "from . import settings",
])
def test_the_bootstrap_check_sees_a_planted_import(planted):
    assert hardway_imports(BOOTSTRAP.read_text() + "\n" + planted + "\n")
