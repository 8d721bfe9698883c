"""spawner "docker": each user's server runs in a Docker container (DockerSpawner).

Design (docs/docker.md):

- **The same accounts and homes as the systemd spawner**: hub user ``alice`` still gets
  the unix account ``jupyter-alice`` (made at first spawn, checked to be hers); her
  container runs as that account's uid and gid, with her home bind-mounted at the same
  path. Her files are the same files under either spawner, owned by the same uid, and a
  switch in either direction changes no ownership.
- **Confined**: containers sit on hardway's own bridge network (``hw-users``, its
  subnet a setting) with traffic between containers off. From there they reach one port
  of this machine: the hub's API, which a systemd socket forwards from the bridge's
  gateway to the hub on 127.0.0.1 (the hub itself stays on loopback). The nftables table
  hardway already keeps for the systemd spawner rejects everything else from the bridge
  to this machine, and forwards nothing to ``limits.deny_networks`` (the cloud metadata
  address by default). No port is published on the host: the proxy reaches each
  container at its address on the bridge. No container gets the Docker socket.
- **Images**: by default hardway builds the users' image itself, on this machine, from
  the pinned users' environment (no registry needed, versions always those of the hub),
  and builds a new one when that environment changes; ``spawner.docker.image`` names any
  other image instead, pulled as ``spawner.docker.pull_policy`` says.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hardway.plugin import (
    Choice,
    ConfigError,
    Context,
    File,
    Health,
    Key,
    Settings,
    hookimpl,
)
from hardway.plugin import keytypes as kt
from hardway.render import HEADER, HUB_PORT

from .docker_engine import NETWORK
from .systemd import (
    ADMIN_GROUP,
    deny_networks,
    ensure_admin_group,
    netpolicy_files,
    user_prefix,
)

BRIDGE = "hw-users"
BRIDGE_UNIT = "hardway-hub-bridge"
#: an image reference as docker takes it: [registry[:port]/]path[:tag][@sha256:digest]
IMAGE_REF = (r"(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
             r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
             r"(?:@sha256:[0-9a-f]{64})?")
IMAGE_ACCEPTED = ("an image reference such as quay.io/jupyter/scipy-notebook:2025-06-02 "
                  "(empty: the image hardway builds from the users' environment)")


def network(settings: Settings) -> tuple[ipaddress.IPv4Network, str]:
    """The bridge's subnet and its gateway (this machine's address on it: the first)."""
    text = settings["spawner.docker.subnet"]
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise ConfigError(f"spawner.docker.subnet: {text!r} is not an IPv4 network; "
                          "expected e.g. 172.31.250.0/24") from None
    if net.prefixlen > 28 or not net.is_private:
        raise ConfigError(f"spawner.docker.subnet: {text!r} must be a private IPv4 network "
                          "of at least 16 addresses (/28 or larger), e.g. 172.31.250.0/24")
    return net, str(net.network_address + 1)


def nft_rules(settings: Settings) -> str:
    """The chains added to hardway's nftables table for the containers' bridge."""
    _, gateway = network(settings)
    v4, _ = deny_networks(settings)
    deny = ("\t\tiifname \"" + BRIDGE + "\" ip daddr { " + ", ".join(v4) + " } counter "
            "reject with icmpx admin-prohibited\n") if v4 else ""
    return ("\tchain containers_in {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            f"\t\tiifname \"{BRIDGE}\" ct state established,related accept\n"
            f"\t\tiifname \"{BRIDGE}\" ip daddr {gateway} tcp dport {HUB_PORT} accept\n"
            f"\t\tiifname \"{BRIDGE}\" meta l4proto tcp counter reject with tcp reset\n"
            f"\t\tiifname \"{BRIDGE}\" counter reject with icmpx admin-prohibited\n"
            "\t}\n"
            "\tchain containers_forward {\n"
            "\t\ttype filter hook forward priority filter - 1; policy accept;\n"
            f"\t\tiifname \"{BRIDGE}\" oifname \"{BRIDGE}\" counter drop\n"
            f"{deny}"
            "\t}\n")


class DockerChoice(Choice):
    kind = "spawner"
    name = "docker"
    description = "Servers run in Docker containers (DockerSpawner), as per-user accounts."

    def keys(self) -> list[Key]:
        return [
            Key("spawner.docker.image", kt.Str(f"(?:{IMAGE_REF})?", IMAGE_ACCEPTED), "",
                "The users' image; empty: built here from the users' environment."),
            Key("spawner.docker.pull_policy",
                kt.OneOf("ifnotpresent", "always", "never"), "ifnotpresent",
                "When a named image is pulled (a built one never is)."),
            Key("spawner.docker.allowed_images",
                kt.ListOf(kt.Str(IMAGE_REF, IMAGE_ACCEPTED)), [],
                "Images users may choose from when they start a server (empty: none)."),
            Key("spawner.docker.subnet", kt.Str(None, "an IPv4 network such as "
                                                "172.31.250.0/24"), "172.31.250.0/24",
                "The containers' bridge network (private, not used elsewhere here)."),
            Key("spawner.docker.gpus", kt.OneOf("none", "all"), "none",
                "Give containers the machine's GPUs (NVIDIA container toolkit needed)."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["dockerspawner"]

    def apt_packages(self, settings: Settings) -> list[str]:
        return ["docker.io", "nftables"]

    def validate(self, settings: Settings) -> None:
        deny_networks(settings)
        network(settings)

    def render(self, settings: Settings, ctx: Context) -> list[File]:
        _, gateway = network(settings)
        socket = (f"# {HEADER}\n"
                  "[Unit]\nDescription=hardway: the hub's API for users' containers\n"
                  "After=docker.service\n\n"
                  f"[Socket]\nListenStream={gateway}:{HUB_PORT}\n"
                  "FreeBind=yes\nNoDelay=yes\n\n"
                  "[Install]\nWantedBy=sockets.target\n")
        service = (f"# {HEADER}\n"
                   "[Unit]\nDescription=hardway: forward the hub's API to users' "
                   f"containers\nRequires={BRIDGE_UNIT}.socket\n\n"
                   "[Service]\n"
                   f"ExecStart=/lib/systemd/systemd-socket-proxyd 127.0.0.1:{HUB_PORT}\n"
                   "DynamicUser=yes\nNoNewPrivileges=yes\nProtectSystem=strict\n"
                   "ProtectHome=yes\nPrivateTmp=yes\nPrivateDevices=yes\n"
                   "CapabilityBoundingSet=\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"
                   "SystemCallFilter=@system-service\n")
        p = ctx.paths
        return [*netpolicy_files(settings, ctx, nft_rules(settings)),
                File(p.unit(f"{BRIDGE_UNIT}.socket"), socket.encode(),
                     component=f"{BRIDGE_UNIT}.socket"),
                File(p.unit(f"{BRIDGE_UNIT}.service"), service.encode(),
                     component=f"{BRIDGE_UNIT}.socket")]

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        _, gateway = network(settings)
        user_bin = ctx.paths.user_venv / "bin"
        host: dict[str, Any] = {
            # servers run as the user's own uid: no capability is needed in there
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "init": True,
            # a container that dies stays until the hub has read why (exit status, out of
            # memory) for its user; the spawner then removes it (``remove`` below)
            "auto_remove": False,
        }
        if settings["spawner.docker.gpus"] == "all":
            host["device_requests"] = [{"Driver": "", "Count": -1,
                                        "Capabilities": [["gpu"]]}]
        image = settings["spawner.docker.image"]
        config: dict[str, Any] = {
            "JupyterHub": {
                "spawner_class":
                    "hardway_plugins.spawner.docker_spawner.HardwayDockerSpawner",
            },
            "Spawner": {
                "cmd": [str(user_bin / "jupyterhub-singleuser")] if not image else
                ["jupyterhub-singleuser"],
                # the hub's API through the bridge's forwarder (the hub stays on loopback)
                "hub_connect_url": f"http://{gateway}:{HUB_PORT}",
                # a container that died is noticed (its route removed, its reason kept
                # for her) within 10 s rather than JupyterHub's 30 s
                "poll_interval": 10,
            },
            "DockerSpawner": {
                "image": image or CURRENT,
                "pull_policy": "never" if not image else settings["spawner.docker.pull_policy"],
                "allowed_images": list(settings["spawner.docker.allowed_images"]),
                "network_name": NETWORK,
                "use_internal_ip": True,
                # the container goes when the server stops (the home is bind-mounted): an
                # image change reaches the next start
                "remove": True,
                "extra_host_config": host,
            },
            "HardwayDockerSpawner": {
                # the systemd spawner's accounts: the same files under either spawner
                "user_prefix": user_prefix(settings),
                "admin_group": ADMIN_GROUP,
                "home_base": str(ctx.paths.home),
            },
        }
        return config

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        from .docker_engine import ensure_engine

        assert ctx.system is not None
        changes = ensure_admin_group(ctx)
        net, gateway = network(settings)
        changes += ensure_engine(ctx.system, NETWORK, BRIDGE, str(net), gateway)
        from .docker_engine import stop_units

        # the systemd spawner's servers: the docker spawner would not know them
        changes += stop_units(ctx.system)
        image = settings["spawner.docker.image"]
        if image:  # before any file changes: an image that cannot be had changes nothing
            from .docker_engine import ensure_named_image

            changes += ensure_named_image(ctx.system, image,
                                          settings["spawner.docker.pull_policy"])
        return changes

    def post_install(self, settings: Settings, ctx: Context) -> list[str]:
        """The built image: made now from the users' environment in place if there is
        none yet (a switch to docker on a running hub), so the restarted hub has one. (A
        named image was checked by install(), before any file changed.)"""
        from .docker_engine import image_exists

        assert ctx.system is not None
        if settings["spawner.docker.image"]:
            return []
        if image_exists(ctx.system, CURRENT) or not ctx.paths.user_venv.exists():
            return []
        return build_current(ctx)

    def health(self, settings: Settings, ctx: Context) -> list[Health]:
        from .docker_engine import health

        assert ctx.system is not None
        image = settings["spawner.docker.image"]
        env = None if image else str(ctx.paths.user_venv.resolve())
        return health(ctx.system, image or CURRENT, NETWORK, BRIDGE_UNIT, env)

    def user_environment_ready(self, settings: Settings, ctx: Context) -> list[str]:
        """The built image follows the users' environment: a new environment, a new image
        (servers started from then on use it; running ones keep theirs)."""
        if settings["spawner.docker.image"]:
            return []
        return build_current(ctx)


#: the tag the hub starts containers from; it moves to each new built image
CURRENT = "hardway-user:current"


def build_current(ctx: Context) -> list[str]:
    from .docker_engine import prune_images
    from .docker_image import ImageError, build

    assert ctx.system is not None
    try:
        built = build(ctx.paths.user_venv)
    except ImageError as e:
        raise ConfigError(f"the users' image could not be built: {e}") from None
    changes = []
    if built.seconds:
        changes.append(f"built the users' image {built.image} "
                       f"({sum(built.seconds.values()):.1f} s)")
    ctx.system.run(["docker", "tag", built.image, CURRENT])
    changes += prune_images(ctx.system, keep={built.image, built.base, CURRENT})
    return changes


@hookimpl
def hardway_choices() -> list[Choice]:
    return [DockerChoice()]


@hookimpl
def hardway_hub_config_object(c: Any, settings: Settings) -> None:
    if settings["spawner.type"] == "docker":
        from .starting import show_stops

        show_stops(c)
