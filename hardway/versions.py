"""The JupyterHub and JupyterLab versions an admin may choose (``versions.jupyterhub``,
``versions.jupyterlab``): the ones this release of hardway was tested with. The last of
each is the one hardway's pins hold (the default); another is installed over the pins
with uv's ``--override``, and changing one goes through ``hardway upgrade``."""

from __future__ import annotations

import re

#: oldest first; the last is pinned in hardway/pins/*.txt
JUPYTERHUB = ("5.5.4", "6.1.1")
JUPYTERLAB = ("4.5.11", "4.6.6")
#: the uv every hub environment holds (bootstrap.py's UV_VERSION)
UV = "0.13.9"


def as_tuple(version: str) -> tuple[int, ...]:
    """"6.1.1" -> (6, 1, 1); a suffix (6.1.0rc1) ends the comparison at its part."""
    out = []
    for part in version.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
        if m.group() != part:
            break
    return tuple(out)


def overrides(jupyterhub: str, jupyterlab: str | None = None) -> list[str]:
    """Requirements that replace the pins' versions, for the versions chosen."""
    out = []
    if jupyterhub != JUPYTERHUB[-1]:
        out.append(f"jupyterhub=={jupyterhub}")
    if jupyterlab is not None and jupyterlab != JUPYTERLAB[-1]:
        out.append(f"jupyterlab=={jupyterlab}")
    return out
