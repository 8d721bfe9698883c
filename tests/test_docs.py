"""Docs that tests keep honest (datasette's habit)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from hardway.cli import docs

TESTS = Path(__file__).parent


@pytest.mark.parametrize("page", sorted(docs.PAGES))
def test_generated_page_is_current(page):
    on_disk = (docs.DOCS / page).read_text()
    assert on_disk == docs.PAGES[page](), f"docs/{page} is stale: run python -m hardway.cli.docs"


@pytest.mark.parametrize("name, fn", docs.hook_functions())
def test_every_hook_is_documented_typed_and_tested(name, fn):
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 40, f"{name} needs a docstring saying when it is called"
    sig = inspect.signature(fn)
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
    for p in sig.parameters.values():
        assert p.annotation is not inspect.Parameter.empty, f"{name}({p.name}): no type"
    mentioned = any(name in f.read_text() for f in TESTS.glob("test_*.py")
                    if f.name != "test_docs.py")
    assert mentioned, f"hook {name} has no test of its own"


def test_every_key_has_a_description():
    from hardway.plugin.manager import Registry, make_manager

    for key in Registry(make_manager(load_entrypoints=False)).declarations():
        assert key.description.strip(), key.name
