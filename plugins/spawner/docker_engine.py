"""The Docker engine under the docker spawner: the distribution's own package, started,
and hardway's bridge network for users' containers (made once, checked every time)."""

from __future__ import annotations

import json

from hardway.apply.system import System
from hardway.errors import HardwayError


def ensure_engine(system: System, network: str, bridge: str, subnet: str,
                  gateway: str) -> list[str]:
    changes: list[str] = []
    if system.run(["systemctl", "is-active", "--quiet", "docker.service"],
                  check=False).returncode != 0:
        system.systemctl("enable", "--now", "docker.service")
        changes.append("started docker.service")
    proc = system.run(["docker", "network", "inspect", network], check=False)
    if proc.returncode == 0:
        found = json.loads(proc.stdout or "[]")
        configs = (found[0].get("IPAM") or {}).get("Config") or [] if found else []
        have = {(c.get("Subnet"), c.get("Gateway")) for c in configs}
        options = found[0].get("Options") or {} if found else {}
        if have == {(subnet, gateway)} and options.get(
                "com.docker.network.bridge.enable_icc") == "false":
            return changes
        # another subnet was chosen: the network is made again (containers on it are
        # users' running servers; docker refuses while any is attached, said below)
        rm = system.run(["docker", "network", "rm", network], check=False)
        if rm.returncode != 0:
            raise HardwayError(f"the docker network {network} has another subnet than "
                               f"spawner.docker.subnet ({subnet}) and cannot be replaced "
                               "while users' containers use it: stop their servers, then "
                               "reload again")
        changes.append(f"removed the docker network {network} (another subnet)")
    system.run(["docker", "network", "create", "--driver", "bridge",
                "--subnet", subnet, "--gateway", gateway,
                "--opt", f"com.docker.network.bridge.name={bridge}",
                "--opt", "com.docker.network.bridge.enable_icc=false",
                network])
    changes.append(f"created the docker network {network} ({subnet}, bridge {bridge})")
    return changes
