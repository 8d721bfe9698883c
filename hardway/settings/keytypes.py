"""The types a setting can have.

Each type converts text typed on the command line (``parse``) and checks a value read
from YAML (``check``). Neither guesses a type from a value's spelling: a string key keeps
``"0123"`` as the string ``"0123"``, and a YAML integer given to a string key is refused
with a hint to quote it, rather than silently turned into ``"123"``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse


class BadValue(ValueError):
    """A value that does not fit its key's type; the message says the accepted form."""


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "empty (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


class KeyType:
    """Base: ``name`` is shown in docs, ``accepted`` describes valid input."""

    name = "value"
    accepted = "a value"

    def parse(self, text: str) -> Any:
        """Convert command-line text to a value of this type."""
        return self.check(text)

    def check(self, value: Any) -> Any:
        """Return ``value`` (normalised) if it fits this type, else raise BadValue."""
        raise NotImplementedError

    def show(self, value: Any) -> str:
        """Text for ``config get``: what ``parse`` would accept back."""
        return "" if value is None else str(value)


class Str(KeyType):
    name = "string"

    def __init__(self, pattern: str | None = None, accepted: str | None = None,
                 empty: bool = True):
        self.pattern = re.compile(pattern) if pattern else None
        self.empty = empty
        self.accepted = accepted or ("a string" if empty else "a non-empty string")

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            hint = ""
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                hint = " (quote it in YAML, e.g. '0123', so it stays text)"
            raise BadValue(f"expected {self.accepted}, got {_yaml_kind(value)}{hint}")
        if not self.empty and not value:
            raise BadValue(f"expected {self.accepted}, got an empty string")
        if self.pattern and value and not self.pattern.fullmatch(value):
            raise BadValue(f"expected {self.accepted}, got {value!r}")
        return value


class Int(KeyType):
    name = "integer"

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max
        bounds = ""
        if min is not None and max is not None:
            bounds = f" from {min} to {max}"
        elif min is not None:
            bounds = f" >= {min}"
        self.accepted = f"a whole number{bounds}"

    def parse(self, text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
            raise BadValue(f"expected {self.accepted}, got {text!r}")
        return self.check(int(text))

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"expected {self.accepted}, got {_yaml_kind(value)}")
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise BadValue(f"expected {self.accepted}, got {value}")
        return int(value)


class Float(KeyType):
    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None):
        self.min, self.max = min, max
        self.accepted = "a number" + (f" greater than {min}" if min is not None else "")

    def parse(self, text: str) -> float:
        try:
            return self.check(float(text))
        except ValueError:
            raise BadValue(f"expected {self.accepted}, got {text!r}") from None

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(f"expected {self.accepted}, got {_yaml_kind(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise BadValue(f"expected {self.accepted}, got {value}")
        if (self.min is not None and value <= self.min) or (
            self.max is not None and value > self.max
        ):
            raise BadValue(f"expected {self.accepted}, got {value}")
        return float(value)


class Bool(KeyType):
    name = "boolean"
    accepted = "true or false"
    _words = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False}

    def parse(self, text: str) -> bool:
        try:
            return self._words[text.strip().lower()]
        except KeyError:
            raise BadValue(f"expected {self.accepted}, got {text!r}") from None

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise BadValue(f"expected {self.accepted}, got {_yaml_kind(value)}")
        return value

    def show(self, value: Any) -> str:
        return "true" if value else "false"


class OneOf(Str):
    """A string from a fixed set of words."""

    name = "choice"

    def __init__(self, *values: str):
        self.values = values
        super().__init__(accepted="one of " + ", ".join(values))

    def check(self, value: Any) -> str:
        value = super().check(value)
        if value not in self.values:
            raise BadValue(f"expected {self.accepted}, got {value!r}")
        return value


class Name(Str):
    """A name picked from a plugin registry; the registry check happens in validate()."""

    name = "name"

    def __init__(self) -> None:
        super().__init__(r"[a-z][a-z0-9_-]*", "a plugin name (lowercase letters, digits, - or _)")


class Memory(Str):
    """A size like 512M or 2G, as systemd's MemoryMax and JupyterHub's mem_limit take;
    ``auto`` (chosen from the machine's memory) and ``none`` (no limit) when allowed."""

    name = "size"

    def __init__(self, words: tuple[str, ...] = ()) -> None:
        self.words = words
        accepted = "a size such as 512M or 2G (K, M, G or T suffix)"
        if words:
            accepted += ", or " + " or ".join(words)
        super().__init__(r"[1-9][0-9]*[KMGT]?" + "".join(f"|{w}" for w in words), accepted)


class Url(Str):
    name = "URL"

    def __init__(self, schemes: tuple[str, ...] = ("http", "https")):
        self.schemes = schemes
        super().__init__(accepted=f"a {' or '.join(schemes)} URL such as https://example.org/path")

    def check(self, value: Any) -> str:
        value = super().check(value)
        parsed = urlparse(value)
        if parsed.scheme not in self.schemes or not parsed.netloc:
            raise BadValue(f"expected {self.accepted}, got {value!r}")
        return value


class AbsPath(Str):
    name = "path"

    def __init__(self) -> None:
        super().__init__(r"/.*", "an absolute path starting with /")


class BaseUrl(Str):
    name = "URL path"

    def __init__(self) -> None:
        super().__init__(r"/([A-Za-z0-9._~-]+/)*",
                         "a path starting and ending with /, e.g. /jupyter/")


class IPAddress(Str):
    """An IPv4 or IPv6 address, written without brackets; empty means every address.

    Kept in its canonical form (``2001:DB8:0::1`` becomes ``2001:db8::1``). Wherever it
    goes into a URL or a ``host:port`` pair, write it with :func:`host_port`, which puts
    an IPv6 address in brackets.
    """

    name = "IP address"

    def __init__(self) -> None:
        super().__init__(accepted="an IPv4 or IPv6 address such as 127.0.0.1 or ::1 "
                                  "(without brackets), or empty for every address")

    def check(self, value: Any) -> str:
        value = super().check(value)
        if not value:
            return value
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise BadValue(f"expected {self.accepted}, got {value!r}") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise BadValue(f"expected {self.accepted}, got {value!r} (a zone such as "
                           "%eth0 is not supported: use a global or unique-local address)")
        return str(address)


def host_port(address: str, port: int) -> str:
    """``address:port`` as URLs, Traefik and JupyterHub take it: ``[::1]:80`` for IPv6,
    ``127.0.0.1:80`` for IPv4, ``:80`` (every address) for an empty address."""
    if ":" in address:
        address = f"[{address}]"
    return f"{address}:{port}"


class ListOf(KeyType):
    """A list of items; on the command line, comma-separated."""

    def __init__(self, item: KeyType):
        self.item = item
        self.name = f"list of {item.name}"
        self.accepted = f"a list of {item.accepted} (comma-separated on the command line)"

    def parse(self, text: str) -> list[Any]:
        if not text.strip():
            return []
        return self.check([self.item.parse(part.strip()) for part in text.split(",")])

    def check(self, value: Any) -> list[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise BadValue(f"expected {self.accepted}, got {_yaml_kind(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.item.check(item))
            except BadValue as e:
                raise BadValue(f"item {i + 1}: {e}") from None
        return out

    def show(self, value: Any) -> str:
        return ",".join(self.item.show(v) for v in value or [])


class MapOf(KeyType):
    """A mapping of string to values; set it in YAML, or item by item as KEY=VALUE."""

    def __init__(self, value: KeyType):
        self.value = value
        self.name = f"mapping of string to {value.name}"
        self.accepted = f"a mapping of names to {value.accepted} (NAME=VALUE on the command line)"

    def parse(self, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, val = part.partition("=")
            if not sep or not name:
                raise BadValue(f"expected {self.accepted}, got {part!r}")
            out[name] = self.value.parse(val)
        return out

    def check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise BadValue(f"expected {self.accepted}, got {_yaml_kind(value)}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise BadValue(f"names must be strings (quote {k!r})")
            try:
                out[k] = self.value.check(v)
            except BadValue as e:
                raise BadValue(f"{k}: {e}") from None
        return out

    def show(self, value: Any) -> str:
        return ",".join(f"{k}={self.value.show(v)}" for k, v in (value or {}).items())


# unix-safe user names (what the hub and the systemd spawner accept)
USERNAME = Str(r"[A-Za-z0-9._@+-]{1,64}", "a user name (letters, digits and . _ @ + -)",
               empty=False)
HOSTNAME = Str(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*"
               r"|[0-9.]+|[0-9A-Fa-f:]+",
               "a DNS name such as hub.example.edu (or an IP address)", empty=False)
