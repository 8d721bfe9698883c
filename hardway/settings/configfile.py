"""Editing /etc/hardway/config.yaml round-trip: an admin's comments, order and layout
survive every change hardway makes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from . import parse_yaml, yaml_rt

NEW_FILE_HEADER = """\
# hardway settings: `hardway config show` lists every key with its default and origin;
# change them with `hardway config set KEY VALUE`, then `hardway config reload`.
"""


class ConfigDoc:
    """One YAML settings file, loaded round-trip."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.original = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.original = ""
        data = parse_yaml(self.original, str(path)) if self.original.strip() else None
        self.data: CommentedMap = data if isinstance(data, CommentedMap) else CommentedMap()

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def set(self, dotted: str, value: Any) -> None:
        parts = dotted.split(".")
        node = self.data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = CommentedMap()
                node[part] = child
            node = child
        node[parts[-1]] = value

    def unset(self, dotted: str) -> bool:
        """Remove a key and any section it leaves empty; False when it was not set."""
        parts = dotted.split(".")
        chain = [self.data]
        for part in parts[:-1]:
            child = chain[-1].get(part)
            if not isinstance(child, dict):
                return False
            chain.append(child)
        if parts[-1] not in chain[-1]:
            return False
        del chain[-1][parts[-1]]
        for i in range(len(parts) - 2, -1, -1):
            if chain[i + 1]:
                break
            del chain[i][parts[i]]
        return True

    def dumps(self) -> str:
        if not self.data:
            return NEW_FILE_HEADER if not self.original.strip() else ""
        buf = io.StringIO()
        yaml_rt().dump(self.data, buf)
        text = buf.getvalue()
        if not self.original.strip():
            text = NEW_FILE_HEADER + text
        return text
