"""The contract an authenticator, spawner or proxy plugin fulfils.

Lifecycle, in the order hardway calls it:
  ``keys()``           when settings load: the choice's own keys, under ``KIND.NAME.``;
  ``validate()``       when the choice is selected, after every key type-checked;
  ``hub_packages()``   / ``user_packages()`` / ``apt_packages()`` at install and reload;
  ``inputs()``         files render reads: the operation reads them beforehand;
  ``render()``         files the choice owns (pure: values only, through ``ctx``);
  ``hub_config()``     its part of hub.json (pure);
  ``install()``        side effects through ``ctx.system`` (idempotent, report changes);
  ``post_install()``   after files are written, before services restart;
  ``user_environment_ready()`` once the users' environment is in place: what is
                       made from it (an image). Last at install (the environment is
                       built in the background meanwhile); right after ``install()`` at
                       reload (which builds environments first), before files change.
  ``health()``         what `hardway status` shows and `hardway doctor` checks of what
                       the choice runs (an engine, an image): read-only, through
                       ``ctx.system``.
Only the selected choice of each kind is called beyond ``keys()``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from hardway.apply.system import System
    from hardway.settings import Key, Settings

from hardway.errors import ConfigError, HardwayError
from hardway.paths import Paths

KINDS = ("auth", "spawner", "proxy")


@dataclasses.dataclass(frozen=True)
class File:
    """A file hardway owns: its exact bytes, mode, owner, and which service reads it.

    ``component`` decides what a change restarts: "hub", "proxy" (static config),
    "proxy-dynamic" (watched by Traefik, no restart), "unit" (daemon-reload and restart
    of that unit's service) or "" (nothing).
    """

    path: Path
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    component: str = ""


@dataclasses.dataclass(frozen=True)
class Health:
    """One thing a choice looked at for ``hardway status`` and ``hardway doctor``.
    ``status`` is "ok", "problem" (doctor exits 1) or "warning"; ``id`` is short
    (doctor shows it under the choice: ``spawner.docker.engine``); ``fix`` is what the
    operator does about a problem or a warning."""

    id: str
    status: str
    what: str
    fix: str = ""


@dataclasses.dataclass
class Context:
    """What rendering and installing may look at. ``system`` is None while rendering."""

    paths: Paths
    secrets: dict[str, str] = dataclasses.field(default_factory=dict)
    system: System | None = None
    #: admins given to ``hardway install --admin NAME:PASSWORD`` (never stored in config)
    admin_passwords: dict[str, str] = dataclasses.field(default_factory=dict)
    #: free-form notes a step leaves for the summary ("traefik: from the package index")
    notes: list[str] = dataclasses.field(default_factory=list)
    #: lines shown once on the operator's terminal and written to no log (a generated
    #: first password); printed at the end of install, after the summary
    terminal_only: list[str] = dataclasses.field(default_factory=list)
    #: the plugin manager, for hooks a choice calls while rendering
    pm: Any = None
    #: facts recorded in install-state.json and shown by `hardway status`
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: units a choice's ``install()`` needs restarted whatever the rendered files say
    #: (the proxy after its binary changed, or after a link its file watcher stops at was
    #: removed): install and reload restart them with the rest
    restart: set[str] = dataclasses.field(default_factory=set)
    #: ``--traefik-binary PATH``
    traefik_local: Path | None = None
    #: this machine's memory in bytes (0: unknown), gathered before rendering
    memory_total: int = 0
    #: the files rendering may look at, read beforehand by the operation (None: the file
    #: does not exist): the chosen choices' ``inputs()`` and every ``file:`` secret.
    #: Render never opens a file or makes a key itself; a dry run therefore writes and
    #: generates nothing.
    inputs: dict[Path, bytes | None] = dataclasses.field(default_factory=dict)

    def read(self, path: Path | str) -> bytes | None:
        """A file's bytes as read before rendering, or None when it does not exist."""
        try:
            return self.inputs[Path(path)]
        except KeyError:
            raise HardwayError(f"{path} was not read before rendering: a choice names the "
                               "files it renders from in Choice.inputs()") from None

    def secret(self, value: Any) -> Any:
        """A secret's value: a ``file:PATH`` value is the file's stripped text (read
        before rendering), anything else is itself."""
        if not (isinstance(value, str) and value.startswith("file:")):
            return value
        content = self.read(value[len("file:"):])
        if content is None:
            raise ConfigError(f"cannot read the secret file {value[len('file:'):]}: it does "
                              "not exist")
        try:
            return content.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"the secret file {value[len('file:'):]} is not UTF-8 "
                              "text") from None


class Choice:
    """Base class for a selectable authenticator (kind "auth"), spawner or proxy."""

    kind: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str] = ""

    def keys(self) -> list[Key]:
        return []

    def validate(self, settings: Settings) -> None:
        """Raise ConfigError naming the key when the settings cannot work together."""

    def hub_packages(self, settings: Settings) -> list[str]:
        return []

    def user_packages(self, settings: Settings) -> list[str]:
        return []

    def apt_packages(self, settings: Settings) -> list[str]:
        return []

    def inputs(self, settings: Settings, paths: Paths) -> list[Path]:
        """Files ``render()``/``hub_config()`` read (through ``ctx.read``): the operation
        reads them before rendering. ``file:`` secrets are gathered without this."""
        return []

    def render(self, settings: Settings, ctx: Context) -> list[File]:
        return []

    def hub_config(self, settings: Settings, ctx: Context) -> dict[str, Any]:
        return {}

    def install(self, settings: Settings, ctx: Context) -> list[str]:
        """Do this choice's side effects; return one line per change made."""
        return []

    def post_install(self, settings: Settings, ctx: Context) -> list[str]:
        return []

    def user_environment_ready(self, settings: Settings, ctx: Context) -> list[str]:
        return []

    def health(self, settings: Settings, ctx: Context) -> list[Health]:
        return []

    def prefix(self) -> str:
        return f"{self.kind}.{self.name}"


def allow_all_unless_listed(settings: Settings, *gates: Any) -> dict[str, Any]:
    """Authenticator config for plugins whose own check is the gate (a signed launch, an
    admin's approval, a directory): JupyterHub >= 5 lets nobody in without an allow list
    or allow_all, so allow all unless ``users.allowed`` or another given list is set."""
    if settings["users.allowed"] or any(gates):
        return {}
    return {"allow_all": True}


def hub_url(settings: Settings) -> str:
    """Where people reach the hub (for messages): ``public_url``, else :func:`check_url`."""
    return settings["public_url"] or check_url(settings)


def check_url(settings: Settings) -> str:
    """The hub through the proxy, from this machine."""
    address = settings["http.address"] or "127.0.0.1"
    if address in ("0.0.0.0", "::"):
        address = "127.0.0.1"
    if ":" in address:
        address = f"[{address}]"
    scheme, port = ("https", settings["https.port"]) if settings["https.enabled"] else (
        "http", settings["http.port"])
    at = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
    return f"{scheme}://{address}{at}{settings['base_url']}"


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``b`` merged over ``a`` recursively. Neither input is changed."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out
