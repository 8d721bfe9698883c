from __future__ import annotations

from pathlib import Path

import pytest

from hardway.paths import Paths
from hardway.plugin.manager import Registry, make_manager


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path)
    p.etc.mkdir(parents=True)
    return p


@pytest.fixture
def registry() -> Registry:
    return Registry(make_manager(load_entrypoints=False))


def write_config(paths: Paths, text: str, name: str | None = None) -> Path:
    target = paths.config_file if name is None else paths.config_d / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
