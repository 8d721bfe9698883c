"""Checks of rendered files before they replace the live ones (install and reload)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from hardway.errors import ConfigError
from hardway.paths import Paths
from hardway.plugin.contract import File

#: top-level sections Traefik v3 accepts in its static and its dynamic configuration
TRAEFIK_STATIC = {"global", "serversTransport", "tcpServersTransport", "entryPoints",
                  "providers", "api", "metrics", "ping", "log", "accessLog", "tracing",
                  "hostResolver", "certificatesResolvers", "experimental", "core", "spiffe",
                  "ocsp"}
TRAEFIK_DYNAMIC = {"http", "tcp", "udp", "tls"}


def traefik_problems(files: list[File]) -> list[str]:
    """Structural checks of rendered Traefik files (plugins can add to them)."""
    import tomlkit

    problems = []
    for f in files:
        if f.component not in ("proxy", "proxy-dynamic") or f.path.suffix != ".toml":
            continue
        try:
            data = tomlkit.loads(f.content.decode()).unwrap()
        except Exception as e:  # tomlkit raises several types
            problems.append(f"{f.path}: not valid TOML: {e}")
            continue
        static = f.component == "proxy"
        allowed = TRAEFIK_STATIC if static else TRAEFIK_DYNAMIC
        kind = "static" if static else "dynamic"
        for key in sorted(set(data) - allowed):
            problems.append(f"{f.path}: Traefik has no {kind} configuration section {key!r} "
                            f"(known: {', '.join(sorted(allowed))})")
        if f.component == "proxy":
            for name, ep in (data.get("entryPoints") or {}).items():
                address = str((ep or {}).get("address", ""))
                port = address.rsplit(":", 1)[-1]
                if not port.isdigit() or not 0 < int(port) < 65536:
                    problems.append(f"{f.path}: entry point {name!r} has no valid address "
                                    f"({address!r})")
    return problems


def check_traefik(files: list[File]) -> None:
    problems = traefik_problems(files)
    if problems:
        raise ConfigError("the settings render a Traefik configuration it would refuse; "
                          "nothing was changed or restarted:\n  " + "\n  ".join(problems))


def check_rendered(files: list[File], paths: Paths) -> None:
    """Validate the rendered Traefik and hub configs, before anything moves."""
    check_traefik(files)
    hub_json = next((f for f in files if f.path == paths.hub_json), None)
    if hub_json is None:
        return
    with tempfile.TemporaryDirectory(prefix="hardway-staging-") as tmp:
        staged = Path(tmp) / "hub.json"
        staged.write_bytes(hub_json.content)
        proc = subprocess.run([sys.executable, "-m", "hardway.ops.hubcheck", str(staged)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        problems = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        raise ConfigError("the settings render a hub configuration JupyterHub would "
                          "refuse; nothing was changed or restarted:\n  "
                          + "\n  ".join(problems[-20:]))
