"""Changing the machine: rendered files written atomically (``files``), the one seam for
commands (``system``), Python environments (``pyenv``) and the Traefik binary
(``traefik_binary``). Render never imports this package."""
