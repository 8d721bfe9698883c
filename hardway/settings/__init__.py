"""Settings: declared keys, layered files, merge and validation. Pure: no writes.

Layers, lowest first (DESIGN.md):
  1. defaults declared with each key by hardway,
  2. defaults declared by plugins for their own keys,
  3. /etc/hardway/config.yaml,
  4. /etc/hardway/config.d/*.yaml in name order.
Merging builds new objects; no layer is ever changed by it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from hardway import versions
from hardway.errors import ConfigError

from . import keytypes as kt


@dataclasses.dataclass(frozen=True)
class Key:
    """One setting, declared once: drives validation, ``config show`` and docs/config.md."""

    name: str
    type: kt.KeyType
    default: Any
    description: str
    secret: bool = False
    #: who declared it: "hardway" or a plugin's name
    owner: str = "hardway"
    #: whether the key must be set (non-empty) when its section is in use
    required: bool = False
    #: whether the hub process sees it (in hub.json); False for keys only another
    #: service reads, so that changing them never restarts the hub
    hub: bool = True

    @property
    def section(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name else ""


def core_keys() -> list[Key]:
    """The keys hardway itself declares; plugins declare theirs through a hook."""
    user_list = kt.ListOf(kt.USERNAME)
    return [
        Key("base_url", kt.BaseUrl(), "/", "URL path under which the hub is served."),
        Key("public_url", kt.Url(), None,
            "Address users reach the hub at, e.g. https://hub.example.edu/ (with base_url); "
            "OAuth callbacks and the LTI configuration are built from it."),
        Key("http.address", kt.IPAddress(), "",
            "IP address (IPv4 or IPv6, without brackets) the proxy listens on; empty "
            "means every address."),
        Key("http.port", kt.Int(1, 65535), 80, "Port the proxy listens on for HTTP."),
        Key("http.trusted_proxies", kt.ListOf(kt.Str(
            r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?", "an IP address or CIDR network")), [],
            "Reverse proxies in front of hardway (nginx, Apache) whose X-Forwarded-* headers "
            "are trusted, e.g. 127.0.0.1/32; headers from anyone else are discarded.",
            hub=False),
        Key("https.enabled", kt.Bool(), False,
            "Serve HTTPS; plain HTTP then only redirects. Give one certificate source: "
            "https.letsencrypt.domains, https.tls.cert/key, or https.self_signed.", hub=False),
        Key("https.port", kt.Int(1, 65535), 443, "Port the proxy listens on for HTTPS.",
            hub=False),
        Key("https.hsts", kt.Bool(), False,
            "Send Strict-Transport-Security (one year): browsers then refuse plain HTTP "
            "for this name. Only with a certificate browsers trust.", hub=False),
        Key("https.letsencrypt.email", kt.Str(r"[^@\s]+@[^@\s]+", "an email address"), "",
            "Contact address given to the ACME CA (expiry notices).", hub=False),
        Key("https.letsencrypt.domains", kt.ListOf(kt.HOSTNAME), [],
            "Names the certificate covers; the first is the main name, the rest are SANs. "
            "Each must resolve to this server.", hub=False),
        Key("https.letsencrypt.staging", kt.Bool(), False,
            "Use Let's Encrypt's staging CA (untrusted certificates, generous rate limits).",
            hub=False),
        Key("https.letsencrypt.ca_server", kt.Url(("https",)), None,
            "ACME directory URL of another CA (overrides staging), e.g. an institution's.",
            hub=False),
        Key("https.letsencrypt.ca_certificates", kt.ListOf(kt.AbsPath()), [],
            "PEM files of CAs to trust when talking to a private ACME CA.", hub=False),
        Key("https.letsencrypt.challenge", kt.OneOf("http-01", "tls-alpn-01"), "http-01",
            "How the CA checks this server holds the names: http-01 on the HTTP port, "
            "tls-alpn-01 on the HTTPS port.", hub=False),
        Key("https.letsencrypt.eab_kid", kt.Str(), "",
            "External account binding key id (institutional ACME CAs require one).",
            hub=False),
        Key("https.letsencrypt.eab_hmac", kt.Str(r"[A-Za-z0-9_=-]*", "the base64url HMAC key "
                                                 "the CA gave"), "",
            "External account binding HMAC key (base64url).", secret=True, hub=False),
        Key("https.tls.cert", kt.AbsPath(), None,
            "Certificate chain (PEM, leaf first) to serve; with https.tls.key. Copied for "
            "the proxy at each reload: run `hardway config reload` after renewing it.",
            hub=False),
        Key("https.tls.key", kt.AbsPath(), None, "Private key (PEM, unencrypted) of "
            "https.tls.cert.", hub=False),
        Key("https.self_signed", kt.Bool(), False,
            "Generate a self-signed certificate (labs and tests: browsers warn).", hub=False),
        Key("https.self_signed_names", kt.ListOf(kt.HOSTNAME), [],
            "Names the self-signed certificate covers; empty: public_url's host, this "
            "machine's name, localhost and 127.0.0.1.", hub=False),
        Key("auth.type", kt.Name(), "firstuse",
            "Authenticator plugin that decides who may log in."),
        Key("auth.allow_all", kt.Bool(), False,
            "Let every user the authenticator accepts log in, with no allow list. "
            "Each authenticator documents what it does when this is false and "
            "users.allowed is empty."),
        Key("users.admin", user_list, [], "Hub admins (also in the jupyterhub-admins group)."),
        Key("users.allowed", user_list, [], "Users allowed to log in (besides admins)."),
        Key("users.blocked", user_list, [], "Users never allowed to log in."),
        Key("spawner.type", kt.Name(), "systemd", "Spawner plugin that runs users' servers."),
        Key("proxy.type", kt.Name(), "traefik", "Proxy plugin in front of the hub."),
        Key("limits.memory", kt.Memory(("auto", "none")), "auto",
            "Memory limit per user server, e.g. 2G. auto: a quarter of this machine's "
            "memory, at least 512M and at most 16G, so that one notebook cannot take the "
            "machine down for everyone; none: no limit."),
        Key("limits.deny_networks", kt.ListOf(kt.Str(
            r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?", "an IP address or CIDR network")),
            ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"],
            "Networks users' servers may not reach: by default the link-local ranges, "
            "where clouds serve each VM's credentials (169.254.169.254, AWS's "
            "fd00:ec2::254). Add internal services users must not see; an empty list "
            "allows everything."),
        Key("limits.cpu", kt.Float(min=0), None,
            "CPU limit per user server in cores, e.g. 1.5; empty for no limit."),
        Key("user_environment.default_app", kt.OneOf("jupyterlab", "classic"), "jupyterlab",
            "Interface users land in."),
        Key("user_environment.packages", kt.ListOf(kt.Str(accepted="a pip requirement",
                                                          empty=False)), [],
            "Extra Python packages installed into the users' environment. Those hardway's "
            "pins do not hold are installed without a pinned hash (the pinned ones keep "
            "theirs); the environment is synced, so packages added by hand go."),
        Key("spawner.http_timeout", kt.Int(10, 3600), 180,
            "Seconds a starting server may take to answer before the spawn fails."),
        Key("versions.jupyterhub", kt.OneOf(*versions.JUPYTERHUB), versions.JUPYTERHUB[-1],
            "JupyterHub version (those this release of hardway was tested with). A change "
            "is applied by `hardway upgrade`: the database is backed up and migrated; "
            "going back to an older version is refused (its database cannot go back).",
            hub=False),
        Key("versions.jupyterlab", kt.OneOf(*versions.JUPYTERLAB), versions.JUPYTERLAB[-1],
            "JupyterLab version in the users' environment (those this release was "
            "tested with); applied by `hardway config reload`.", hub=False),
        Key("hub.db_url", kt.Str(r"(sqlite|postgresql(\+psycopg)?)://.*",
                                 "an SQLAlchemy URL such as postgresql://user:pw@host/db, "
                                 "or empty for SQLite in /var/lib/hardway"),
            "", "Hub database. Empty: SQLite in /var/lib/hardway.", secret=True),
        Key("branding.logo", kt.AbsPath(), None,
            "Image file shown as the logo on the hub's pages (PNG, SVG or JPEG)."),
    ]


# --------------------------------------------------------------------------- layers


@dataclasses.dataclass(frozen=True)
class Layer:
    """Flat ``{dotted key: value}`` read from one source, with where each key was written."""

    origin: str
    values: Mapping[str, Any]
    lines: Mapping[str, int] = dataclasses.field(default_factory=dict)


def yaml_rt() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML text, turning a syntax error into a ConfigError naming file and line."""
    try:
        data = yaml_rt().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{origin}, line {mark.line + 1}" if mark else origin
        raise ConfigError(f"{where}: not valid YAML: {e.problem or e}") from None
    except YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level, "
                          f"got {type(data).__name__}")
    return data


class Declarations:
    """All declared keys by dotted name."""

    def __init__(self, keys: Iterable[Key]):
        self.keys: dict[str, Key] = {}
        for key in keys:
            if key.name in self.keys:
                other = self.keys[key.name].owner
                raise ConfigError(f"key {key.name} is declared twice ({other} and {key.owner})")
            self.keys[key.name] = key
        # every proper prefix of a key name is a section
        self.sections = {
            ".".join(k.split(".")[:i]) for k in self.keys for i in range(1, k.count(".") + 1)
        }

    def __iter__(self) -> Iterator[Key]:
        return iter(sorted(self.keys.values(), key=lambda k: k.name))

    def __contains__(self, name: str) -> bool:
        return name in self.keys

    def get(self, name: str) -> Key:
        try:
            return self.keys[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.keys), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        plugin = ""
        parts = name.split(".")
        head = ".".join(parts[:2])
        if (len(parts) >= 2 and parts[0] in ("auth", "spawner", "proxy")
                and head not in self.keys and head not in self.sections):
            plugin = (f" No installed plugin declares {parts[0]}.{parts[1]}.*; "
                      "is the plugin missing?")
        return (f"unknown key {name!r}.{hint}{plugin} "
                "`hardway config show` lists every key.")

    def flatten(self, data: Mapping[str, Any], origin: str) -> Layer:
        """Turn nested YAML into ``{dotted: value}``, checking names and types."""
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}

        def walk(node: Mapping[str, Any], prefix: str) -> None:
            for raw_name, value in node.items():
                if not isinstance(raw_name, str):
                    raise ConfigError(f"{origin}: {prefix}{raw_name!r} is not a setting name")
                name = prefix + raw_name
                line = _line_of(node, raw_name)
                where = f"{origin}, line {line}" if line else origin
                if name in self.keys:
                    key = self.keys[name]
                    try:
                        if key.secret:
                            values[name] = check_secret(key, value)
                        else:
                            values[name] = None if value is None else key.type.check(value)
                    except kt.BadValue as e:
                        raise ConfigError(f"{where}: {name}: {e}") from None
                    if line:
                        lines[name] = line
                elif name in self.sections:
                    if value is None:
                        continue
                    if not isinstance(value, Mapping):
                        raise ConfigError(f"{where}: {name} is a section; expected a mapping "
                                          f"of its keys, got {kt._yaml_kind(value)}")
                    walk(value, name + ".")
                else:
                    raise ConfigError(f"{where}: {self.unknown_message(name)}")

        walk(data, "")
        return Layer(origin, _plain(values), lines)


def check_secret(key: Key, value: Any, readable: bool = False) -> Any:
    """A secret key's value: of its type, or ``file:PATH`` where that can work (a string
    key, or each value of a mapping); see :func:`check_secret_file`. With ``readable``
    (``config set``), each file named must also be there and readable."""
    if isinstance(value, str) and value.startswith("file:"):
        check_secret_file(value, key)
    else:
        value = None if value is None else key.type.check(value)
    for label, ref in secret_file_refs(value):
        try:
            check_secret_file(ref)
            if readable:
                check_secret_file_readable(ref)
        except kt.BadValue as e:
            raise kt.BadValue(f"{label}{e}") from None
    return value


def secret_file_refs(value: Any) -> list[tuple[str, str]]:
    """The ``file:PATH`` references in a secret's value, each with a label for messages:
    ``""`` for the value itself, ``"NAME: "`` for a value in a mapping."""
    if isinstance(value, str) and value.startswith("file:"):
        return [("", value)]
    if isinstance(value, Mapping):
        return [(f"{k}: ", v) for k, v in value.items()
                if isinstance(v, str) and v.startswith("file:")]
    return []


def check_secret_file(value: str, key: Key | None = None) -> str:
    """``file:PATH`` for a secret: PATH must be an absolute path (read at render time).

    Only a key holding one string can take its value from a file: a mapping or a list
    read from a file would reach the plugins as a string where they expect a dict or a
    list. Those take ``file:PATH`` per value instead, which their plugin resolves.
    """
    if key is not None and not isinstance(key.type, kt.Str):
        if isinstance(key.type, kt.MapOf):
            hint = ("each value may be file:/abs/path instead, e.g. "
                    "NAME=file:/etc/hardway/secrets/NAME")
        elif isinstance(key.type, kt.ListOf):
            hint = "each item may be file:/abs/path instead"
        else:
            hint = f"give {key.type.accepted} itself"
        raise kt.BadValue(f"got {value!r}, but a file: value cannot hold a whole "
                          f"{key.type.name} (only a string secret can come from a file); "
                          f"{hint}")
    if not value.startswith("file:/"):
        raise kt.BadValue("file: must be followed by an absolute path, e.g. "
                          "file:/etc/hardway/secrets/db-url")
    return value


def check_secret_file_readable(value: str) -> None:
    """At ``config set``: the file a ``file:PATH`` secret names exists and can be read
    (hardway reads it as root whenever it renders the hub's configuration)."""
    path = Path(value[len("file:"):])
    try:
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a regular file"
            raise kt.BadValue(f"{value}: {path} {what}; create the file holding the "
                              "secret (readable by root) first")
        path.read_bytes().decode("utf-8")
    except OSError as e:
        raise kt.BadValue(f"{value}: cannot read {path}: {e.strerror or e} (the file "
                          "must be readable by root)") from None
    except UnicodeDecodeError:
        raise kt.BadValue(f"{value}: {path} is not UTF-8 text; the file must hold the "
                          "secret as text") from None


def resolve_secret(value: Any) -> Any:
    """The secret itself: a ``file:PATH`` value is replaced by the file's stripped text."""
    if isinstance(value, str) and value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read the secret file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"the secret file {path} is not UTF-8 text") from None
    return value


def _line_of(node: Any, name: str) -> int | None:
    try:
        return node.lc.key(name)[0] + 1
    except Exception:
        return None


def _plain(value: Any) -> Any:
    """Deep copy into plain dict/list/str/int, dropping ruamel's comment-carrying types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return copy.deepcopy(value)


def read_layer_file(path: Path, decl: Declarations) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Layer(str(path), {})
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return decl.flatten(parse_yaml(text, str(path)), str(path))


# --------------------------------------------------------------------------- merged view


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings: every declared key's value and the layer that set it."""

    decl: Declarations
    values: Mapping[str, Any]
    origins: Mapping[str, str]

    def __getitem__(self, name: str) -> Any:
        if name not in self.decl:
            raise KeyError(name)
        return copy.deepcopy(self.values[name])

    def section(self, prefix: str) -> dict[str, Any]:
        """``{suffix: value}`` for every key under ``prefix.``."""
        p = prefix + "."
        return {k[len(p):]: copy.deepcopy(v) for k, v in self.values.items() if k.startswith(p)}

    def for_hub(self) -> dict[str, Any]:
        """The values the hub process is given (keys declared with ``hub=False`` left out)."""
        return {k: copy.deepcopy(v) for k, v in self.values.items() if self.decl.keys[k].hub}


def merge(decl: Declarations, layers: Iterable[Layer]) -> Settings:
    """Overlay layers on the declared defaults. Returns new objects; layers are untouched."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key in decl:
        values[key.name] = copy.deepcopy(key.default)
        origins[key.name] = "default" if key.owner == "hardway" else f"default ({key.owner})"
    for layer in layers:
        for name, value in layer.values.items():
            values[name] = copy.deepcopy(value)
            line = layer.lines.get(name)
            origins[name] = f"{layer.origin}:{line}" if line else layer.origin
    return Settings(decl, values, origins)


def read_drop_ins(config_d: Path, decl: Declarations) -> list[Layer]:
    """The config.d/*.yaml layers, in name order."""
    if not config_d.is_dir():
        return []
    return [read_layer_file(path, decl) for path in sorted(config_d.glob("*.yaml"))]


def read_layers(config_file: Path, config_d: Path, decl: Declarations) -> list[Layer]:
    return [read_layer_file(config_file, decl), *read_drop_ins(config_d, decl)]
