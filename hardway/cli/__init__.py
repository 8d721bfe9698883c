"""The `hardway` command: ``main`` parses and dispatches (the only place that prints errors
and exits), ``config`` holds the ``hardway config ...`` verbs, ``docs`` regenerates the
reference pages. Shared helpers of the commands live here."""

from __future__ import annotations

import os

from hardway.errors import UsageError


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("this command changes the system: run it as root (sudo hardway ...)")
