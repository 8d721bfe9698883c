"""The Docker engine under the docker spawner: the distribution's own package, started,
and hardway's bridge network for users' containers (made once, checked every time)."""

from __future__ import annotations

import json

from hardway.apply.system import System
from hardway.errors import HardwayError
from hardway.plugin import Health

#: the docker network users' containers run on
NETWORK = "hardway-users"


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


def image_exists(system: System, image: str) -> bool:
    return system.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                      check=False).returncode == 0


def ensure_named_image(system: System, image: str, policy: str) -> list[str]:
    """``image`` present here, pulled when the policy says so; else a ConfigError naming
    the key and the value (the change is refused, the hub keeps its image)."""
    from hardway.errors import ConfigError

    present = image_exists(system, image)
    if present and policy != "always":
        return []
    if policy == "never":
        raise ConfigError(f"spawner.docker.image: {image!r} is not on this machine and "
                          "spawner.docker.pull_policy is never: load it (docker load) or "
                          "allow a pull; nothing was changed")
    proc = system.run(["docker", "pull", "--quiet", image], check=False, timeout=1800)
    if proc.returncode != 0:
        why = " ".join((proc.stdout or "").split())[-300:]
        raise ConfigError(f"spawner.docker.image: {image!r} is not on this machine and "
                          f"cannot be pulled ({why or 'no reason given'}); expected an "
                          "image docker can pull or one loaded here; nothing was changed")
    return [f"pulled the image {image}"]


def hardway_images(system: System) -> list[str]:
    """The tags of the images hardway built (users' images and their bases)."""
    proc = system.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                       "--filter", "reference=hardway-user", "--filter",
                       "reference=hardway-base"], check=False)
    return (proc.stdout or "").split()


def prune_images(system: System, keep: set[str]) -> list[str]:
    """Remove hardway's older users' images (a running container's image stays: docker
    refuses to remove it, and its turn comes at the next reload after that server
    stopped; said so)."""
    out = []
    for tag in hardway_images(system):
        if tag in keep:
            continue
        proc = system.run(["docker", "image", "rm", tag], check=False)
        if proc.returncode == 0:
            out.append(f"removed the older users' image {tag}")
        else:
            why = " ".join(((proc.stderr or "") + (proc.stdout or "")).split())[:200]
            out.append(f"kept the older users' image {tag} for now ({why or 'in use'})")
    return out


def remove_everything(system: System, network: str, containers: str = "jupyter-") -> list[str]:
    """For uninstall: users' containers (their homes are mounts, kept or purged with the
    accounts), hardway's network and its images. The engine itself stays (a package)."""
    if system.run(["systemctl", "is-active", "--quiet", "docker.service"],
                  check=False).returncode != 0:
        return []
    out = []
    ids = (system.run(["docker", "ps", "-aq", "--filter", f"name=^{containers}"],
                      check=False).stdout or "").split()
    if ids:
        system.run(["docker", "rm", "-f", *ids], check=False)
        out.append(f"removed {len(ids)} users' container(s)")
    if system.run(["docker", "network", "rm", network], check=False).returncode == 0:
        out.append(f"removed the docker network {network}")
    tags = hardway_images(system)
    if tags:
        system.run(["docker", "image", "rm", *tags], check=False)
        out.append(f"removed the users' images {', '.join(sorted(tags))}")
    return out


def health(system: System, image: str, network: str, bridge_unit: str,
           env_dir: str | None) -> list[Health]:
    """For `hardway status` and `hardway doctor`: the engine, the image servers start from
    (``env_dir``: the users' environment a built image must come from; None for a named
    image), the network, the hub's forwarder, the users' containers."""
    out = []
    active = (system.run(["systemctl", "is-active", "docker.service"], check=False
                         ).stdout or "?").strip()
    version = (system.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          check=False).stdout or "").strip()
    if active == "active" and version:
        out.append(Health("engine", "ok", f"docker.service: active, engine {version}"))
    else:
        out.append(Health("engine", "problem", f"docker.service: {active}, engine "
                          f"{version or 'not answering'}",
                          "`journalctl -u docker -n 50` says why; `systemctl start docker` "
                          "(or `hardway config reload`)"))
        return out  # nothing else can be asked of it
    found = system.run(["docker", "image", "inspect", "--format",
                        "{{.Id}} {{.Created}} {{index .Config.Labels \"org.hardway.user-env\"}}",
                        image], check=False)
    parts = (found.stdout or "").split()
    if found.returncode != 0 or len(parts) < 2:
        out.append(Health("image", "problem", f"users' image {image}: MISSING (servers "
                          "cannot start)", "`hardway config reload` builds or pulls it"))
    else:
        made_from = parts[2].strip('"') if len(parts) > 2 and parts[2] != "<no" else ""
        what = (f"users' image {image}: {parts[0][7:19]}, built {parts[1][:19]}"
                + (f", from {made_from}" if made_from else ""))
        if env_dir is not None and made_from != env_dir:
            out.append(Health("image", "warning", what + f" (not the users' environment "
                              f"in use, {env_dir})", "`hardway config reload` builds it "
                              "from the environment in use"))
        else:
            out.append(Health("image", "ok", what))
    net = system.run(["docker", "network", "inspect", "--format",
                      "{{range .IPAM.Config}}{{.Subnet}}{{end}}", network], check=False)
    if net.returncode == 0:
        out.append(Health("network", "ok", f"docker network {network}: "
                          f"{(net.stdout or '').strip()}"))
    else:
        out.append(Health("network", "problem", f"docker network {network}: MISSING",
                          "`hardway config reload` makes it again"))
    sock = (system.run(["systemctl", "is-active", f"{bridge_unit}.socket"], check=False
                       ).stdout or "?").strip()
    out.append(Health("hub-bridge", "ok" if sock == "active" else "problem",
                      f"{bridge_unit}.socket (the hub's API for containers): {sock}",
                      "" if sock == "active" else
                      f"`systemctl restart {bridge_unit}.socket` (or `hardway config "
                      "reload`)"))
    listed = (system.run(["docker", "ps", "-a", "--filter", f"network={network}", "--format",
                          "{{.Names}} {{.State}} {{.Status}}"], check=False).stdout or "")
    running, stopped = [], []
    for line in listed.splitlines():
        name, _, rest = line.partition(" ")
        state, _, status = rest.partition(" ")
        (running if state == "running" else stopped).append(
            name if state == "running" else f"{name} ({status})")
    out.append(Health("containers", "ok", f"users' containers running: {len(running)}"
                      + (f" ({', '.join(sorted(running)[:10])}"
                         f"{', ...' if len(running) > 10 else ''})" if running else "")))
    if stopped:
        out.append(Health("containers-stopped", "warning",
                          f"users' containers stopped by themselves: {', '.join(stopped)}",
                          "the hub notices within seconds and shows each user why; "
                          "`docker logs NAME` says more"))
    return out


def stop_containers(system: System, network: str) -> list[str]:
    """Stop and remove users' containers on hardway's network (a switch to the systemd
    spawner: the hub then starts units; the homes are mounts, nothing is lost)."""
    ids = (system.run(["docker", "ps", "-aq", "--filter", f"network={network}"],
                      check=False).stdout or "").split()
    if not ids:
        return []
    system.run(["docker", "rm", "-f", *ids], check=False)
    return [f"stopped {len(ids)} server(s) running in containers (their files are kept; "
            "their next start is a systemd unit)"]


def stop_units(system: System) -> list[str]:
    """Stop users' servers running as systemd units (a switch to the docker spawner)."""
    proc = system.run(["systemctl", "list-units", "--plain", "--no-legend", "--state=active",
                       "--type=service", "jupyter-*-singleuser.service"], check=False)
    units = [ln.split()[0] for ln in (proc.stdout or "").splitlines() if ln.split()]
    for unit in units:
        system.systemctl("stop", unit, check=False)
    return [f"stopped {len(units)} server(s) running as systemd units (their files are "
            "kept; their next start is a container)"] if units else []
