"""spawner "systemd": each user's server is a systemd unit running as their own unix user.

Hub user ``alice`` runs as unix user ``jupyter-alice`` (created at first spawn, home
0700). Names that are not valid unix names, or too long, are shortened and get a hash
suffix; the unix user's comment field records the hub name it belongs to, and a spawn
is refused when it does not match, so two hub names can never share one unix user.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
from typing import Any

from hardway.plugin import Choice, ConfigError, Context, File, Key, Settings, hookimpl
from hardway.plugin import keytypes as kt
from hardway.render import HEADER, render_unit

ADMIN_GROUP = "jupyterhub-admins"
#: how the comment (GECOS) field of every unix account the spawner creates begins: the
#: hub user it belongs to follows (backup, restore and uninstall find accounts by it)
ACCOUNT_MARKER = "hardway hub user "
MAX_UNIX_NAME = 32
NETPOLICY_UNIT = "hardway-netpolicy.service"
NFT_TABLE = "hardway"
#: the accounts users' servers run as: Debian's and Ubuntu's regular uid range
#: (login.defs UID_MIN..UID_MAX), where useradd puts every jupyter-* account
USER_UIDS = (1000, 60000)


def deny_networks(settings: Settings) -> tuple[list[str], list[str]]:
    """``limits.deny_networks`` split into IPv4 and IPv6 networks (normalised)."""
    v4: list[str] = []
    v6: list[str] = []
    for text in settings["limits.deny_networks"]:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"limits.deny_networks: {text!r} is not an IP address or "
                              "network; expected e.g. 169.254.0.0/16 or fe80::/10") from None
        (v4 if net.version == 4 else v6).append(str(net))
    return v4, v6


def nft_ruleset(settings: Settings, extra_chains: str = "") -> bytes:
    """The nftables table that confines users' servers on this machine's network.

    Matched on the socket owner's uid (the accounts servers run as), in the output hook:
    it holds on cgroup v1 and v2 alike, unlike systemd's per-unit BPF IP filter, and it
    answers at once (a TCP reset, an ICMP "administratively prohibited") rather than
    letting a connection hang. Loaded atomically: the file deletes and recreates the table.
    """
    v4, v6 = deny_networks(settings)
    uids = f"{USER_UIDS[0]}-{USER_UIDS[1]}"
    rules = []
    for family, nets in (("ip", v4), ("ip6", v6)):
        if nets:
            addrs = "{ " + ", ".join(nets) + " }"
            rules += [f"meta skuid {uids} {family} daddr {addrs} meta l4proto tcp "
                      "counter reject with tcp reset",
                      f"meta skuid {uids} {family} daddr {addrs} "
                      "counter reject with icmpx admin-prohibited"]
    for port in loopback_ports_denied(settings):
        rules += [f"meta skuid {uids} ip daddr 127.0.0.0/8 tcp dport {port} "
                  "counter reject with tcp reset",
                  f"meta skuid {uids} ip6 daddr ::1 tcp dport {port} "
                  "counter reject with tcp reset"]
    body = "".join(f"\t\t{r}\n" for r in rules)
    return (f"# {HEADER}\n"
            f"table inet {NFT_TABLE}\n"
            f"delete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            "\tchain users_out {\n"
            "\t\ttype filter hook output priority filter; policy accept;\n"
            f"{body}"
            "\t}\n"
            f"{extra_chains}"
            "}\n").encode()


def loopback_ports_denied(settings: Settings) -> list[int]:
    """Loopback ports no user may connect to: the proxy's API (it can rewrite every
    route). Known here only for the Traefik proxy."""
    if settings["proxy.type"] == "traefik" and "proxy.traefik.api_port" in settings.decl:
        return [settings["proxy.traefik.api_port"]]
    return []


#: a name an existing account may have (POSIX's portable set, as useradd takes it):
#: letters, digits, '.', '_' and '-', not starting with '-' or '.', at most 32 long.
#: All-digit names are left out: tools (systemd-run, chown) would read them as a uid.
EXISTING_NAME = re.compile(r"(?![0-9]+$)[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")


def unix_name(hub_name: str, prefix: str = "jupyter-", existing: bool = False) -> str:
    """The unix user name for a hub user: ``prefix + name``, made safe and short.

    Kept as is when the result is a valid name of at most 32 characters; otherwise
    unsafe characters become ``-``, the name is cut, and 7 characters of a hash of the
    original name make it unique.

    With ``existing`` (auth pam: servers run as accounts that are already there, such as
    ``john.doe``), nothing is created, so no name is made up: the result is ``prefix +
    name`` as is, and any account with exactly that name is the one. A name that fits
    :data:`EXISTING_NAME` goes into unit names and systemd-run as it is; the spawner
    refuses the others (see ``HardwaySystemdSpawner.ensure_unix_user``).
    """
    if existing:
        return prefix + hub_name
    safe = re.sub(r"[^a-z0-9_-]", "-", hub_name.lower())
    name = prefix + safe
    if safe == hub_name and len(name) <= MAX_UNIX_NAME and re.fullmatch(r"[a-z_][a-z0-9_-]*", name):
        return name
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:7]
    return f"{name[:MAX_UNIX_NAME - 8].rstrip('-')}-{digest}"


def user_prefix(settings: Settings) -> str:
    """The prefix of users' unix accounts: the systemd spawner's setting, which the
    docker spawner shares (the same accounts under either)."""
    return (settings["spawner.systemd.user_prefix"]
            if "spawner.systemd.user_prefix" in settings.decl else "jupyter-")


class SystemdChoice(Choice):
    kind = "spawner"
    name = "systemd"
    description = "Servers run as systemd units under per-user unix accounts."

    def keys(self) -> list[Key]:
        return [
            Key("spawner.systemd.user_prefix",
                kt.Str(r"[a-z][a-z0-9_-]{0,15}", "a unix name prefix such as jupyter-"),
                "jupyter-", "Prefix of the unix accounts created for hub users."),
            Key("spawner.systemd.isolate_tmp", kt.Bool(), True,
                "Give each server its own /tmp."),
            Key("spawner.systemd.isolate_devices", kt.Bool(), True,
                "Give each server a minimal /dev."),
        ]

    def hub_packages(self, settings: Settings) -> list[str]:
        return ["jupyterhub-systemdspawner"]

    def apt_packages(self, settings: Settings) -> list[str]:
        return ["nftables"]

    def validate(self, settings: Settings) -> None:
        deny_networks(settings)

    def render(self, settings: Settings, ctx: Context) -> list[File]:
        return netpolicy_files(settings, ctx)

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return systemd_hub_config(settings, ctx)

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        changes = ensure_admin_group(ctx)
        if shutil.which("docker"):  # the docker spawner's servers: this one would not know them
            from .docker_engine import NETWORK, stop_containers

            assert ctx.system is not None
            changes += stop_containers(ctx.system, NETWORK)
        return changes


def netpolicy_files(settings: Settings, ctx: Context, extra_chains: str = "") -> list[File]:
    """The nftables table confining users (and ``extra_chains``) and the unit loading it."""
    p = ctx.paths
    return [
        File(p.netpolicy, nft_ruleset(settings, extra_chains), 0o600,
             component=NETPOLICY_UNIT),
        File(p.unit(NETPOLICY_UNIT), render_unit(NETPOLICY_UNIT, ruleset=p.netpolicy,
                                                 table=NFT_TABLE),
             component=NETPOLICY_UNIT),
    ]


def systemd_hub_config(settings: Settings, ctx: Context) -> dict[str, Any]:
    user_bin = ctx.paths.user_venv / "bin"
    v4, v6 = deny_networks(settings)
    # each server's own unit: other users' processes hidden in /proc, and the denied
    # networks again as systemd's BPF filter (enforced on cgroup v2 hosts; the
    # nftables table above holds everywhere)
    properties: dict[str, Any] = {"ProtectProc": "invisible"}
    if v4 or v6:
        properties["IPAddressDeny"] = " ".join(v4 + v6)
    return {
        "JupyterHub": {
            "spawner_class": "hardway_plugins.spawner.systemd_spawner.HardwaySystemdSpawner",
        },
        "Spawner": {"cmd": [str(user_bin / "jupyterhub-singleuser")]},
        "SystemdSpawner": {
            "isolate_tmp": settings["spawner.systemd.isolate_tmp"],
            "isolate_devices": settings["spawner.systemd.isolate_devices"],
            "disable_user_sudo": True,
            "default_shell": "/bin/bash",
            "extra_paths": [str(user_bin)],
            "username_template": "{USERNAME}",
            "unit_name_template": "{USERNAME}-singleuser",
            "unit_extra_properties": properties,
        },
        "HardwaySystemdSpawner": {
            "user_prefix": settings["spawner.systemd.user_prefix"],
            "admin_group": ADMIN_GROUP,
            "home_base": str(ctx.paths.home),
        },
    }


def ensure_admin_group(ctx: Context) -> list[str]:
    assert ctx.system is not None
    if ctx.system.group_exists(ADMIN_GROUP):
        return []
    ctx.system.run(["groupadd", "--system", ADMIN_GROUP])
    return [f"created group {ADMIN_GROUP}"]


@hookimpl
def hardway_choices() -> list[Choice]:
    return [SystemdChoice()]


@hookimpl
def hardway_hub_config_object(c: Any, settings: Settings) -> None:
    if settings["spawner.type"] == "systemd":
        from .starting import show_stops

        show_stops(c)
