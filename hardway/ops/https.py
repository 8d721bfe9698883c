"""What the proxy serves over HTTPS, name by name, and why a name has no certificate.

Each configured name is asked for with its own server name (SNI): a certificate for the
other names says nothing about this one. A name without a certificate gets Traefik's own
reason, read from the proxy's journal.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from hardway import tls
from hardway.apply.system import System
from hardway.settings import Settings

from .install import PROXY_UNIT

#: what Traefik logs when an ACME order fails (the account, a challenge, the CA)
ACME_FAILURE = re.compile(r"Unable to obtain ACME certificate|Cannot retrieve the ACME "
                          r"challenge|The ACME resolver .* is skipped|unable to get ACME account")
#: where lego lists each name's problem in a failed order
PROBLEMS = "had a problem"
#: the names a failure line is about (zerolog writes domains=["a","b"])
LINE_DOMAINS = re.compile(r"domains=\[(?P<names>[^\]]*)\]")
HINT = ("usual causes: a name that does not resolve to this server, port 80 (http-01) or "
        "443 (tls-alpn-01) closed to the CA, a wrong EAB key; watch: journalctl -u "
        "jupyterhub-proxy -f")


@dataclass(frozen=True)
class NameState:
    name: str
    #: what a client asking for this name gets (None: no handshake)
    served: tls.Served | None
    #: Traefik's last reason for not having a certificate for it ("" if none logged)
    reason: str = ""

    @property
    def issued(self) -> bool:
        s = self.served
        return s is not None and not s.placeholder and covers(s.names, self.name)

    def line(self) -> str:
        s = self.served
        if self.issued and s is not None:
            return f"{self.name}: {s.expiry()}"
        if self.reason:
            return f"{self.name}: not issued: Traefik says: {self.reason}"
        if s is None:
            return f"{self.name}: not served (no TLS handshake on the HTTPS port)"
        if s.placeholder:
            return f"{self.name}: not issued yet (Traefik serves its placeholder)"
        return (f"{self.name}: not issued: the certificate served for it names only "
                f"{', '.join(s.names) or '?'}")


def covers(cert_names: tuple[str, ...], name: str) -> bool:
    """Whether a certificate for ``cert_names`` is valid for ``name`` (one-label
    wildcards as TLS clients match them)."""
    name = name.lower()
    for n in (c.lower() for c in cert_names):
        if n == name or (n.startswith("*.") and name.count(".") == n.count(".")
                         and name.split(".", 1)[1] == n[2:]):
            return True
    return False


def proxy_invocation(system: System) -> str:
    """The running proxy's start ("" if systemd names none)."""
    return (system.run(["systemctl", "show", "--property=InvocationID", "--value",
                        PROXY_UNIT], check=False).stdout or "").strip()


def proxy_log(system: System, invocation: str | None = None) -> str:
    """The journal of the proxy's start ``invocation`` (the running one unless given):
    an error the stopped one logged is not this one's."""
    if invocation is None:
        invocation = proxy_invocation(system)
    where = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["-u", PROXY_UNIT]
    return system.run(["journalctl", "--no-pager", "-o", "cat", *where],
                      check=False).stdout or ""


def name_part(line: str, name: str, others: list[str]) -> str | None:
    """The part of a failed order's error about ``name``: lego writes "[name] why" (one
    per line) or "[name: why]"; None if the line has no part for it."""
    at = line.find(PROBLEMS)
    if at < 0:
        return None
    text = line[at + len(PROBLEMS):]
    marker = r"(?:^|[\[\s,;]|\\n){}(?:\]\s|:\s)"
    m = re.search(marker.format(re.escape(name)), text, re.I)
    if m is None:
        return None
    rest = text[m.end():]
    ends = [e.start() for e in [re.search(r'\]"|\\n\[|\\n"|(?<!\\)"\s|\]$', rest)] if e]
    ends += [e.start() for o in others if o.lower() != name.lower()
             and (e := re.search(marker.format(re.escape(o)), rest, re.I))]
    why = rest[:min(ends)] if ends else rest
    return why.replace('\\"', '"').strip().removesuffix("\\n").strip()


def reasons(log: str, names: list[str]) -> dict[str, str]:
    """Traefik's last reason per name: the name's own part of a failed order, else a
    failure naming it, else a failure naming no domain (the account, the CA)."""
    found: dict[str, str] = {}
    for line in (ln.strip() for ln in log.splitlines()):
        if not ACME_FAILURE.search(line):
            continue
        parts = {n: part for n in names if (part := name_part(line, n, names))}
        listed = LINE_DOMAINS.search(line)
        about = ({n.strip(' "').lower() for n in listed["names"].split(",")}
                 if listed else set())
        for name in names:
            if name in parts:
                found[name] = parts[name][:400]
            elif PROBLEMS not in line and (name.lower() in about or not about):
                found[name] = line[:400]
    return found


def names_of(settings: Settings) -> list[str]:
    mode = tls.source(settings)
    if mode == "acme":
        return list(settings["https.letsencrypt.domains"])
    if mode == "self-signed":
        return tls.self_signed_names(settings)
    return []


def states(settings: Settings, log: str = "") -> list[NameState]:
    names = names_of(settings)
    why = reasons(log, names) if log else {}
    out = []
    for name in names:
        try:
            served: tls.Served | None = tls.served(settings["https.port"], name, timeout=3)
        except OSError:
            served = None
        state = NameState(name, served)
        out.append(state if state.issued else NameState(name, served, why.get(name, "")))
    return out


def no_sni_line(settings: Settings) -> str:
    try:
        s = tls.served(settings["https.port"], None, timeout=3)
    except OSError as e:
        return f"(no server name): nothing answers on port {settings['https.port']} ({e})"
    return f"(no server name): {s.describe()}"


def report(system: System, settings: Settings) -> list[str]:
    """`hardway status`: each name, then what a client sending no name gets."""
    mode = tls.source(settings)
    if mode == "off":
        return ["https: off"]
    if mode == "files":
        return [tls.status_line(settings)]
    log = proxy_log(system) if mode == "acme" else ""
    lines = [f"https: {mode}"]
    lines += [f"  {s.line()}" for s in states(settings, log)]
    lines.append(f"  {no_sni_line(settings)}")
    return lines


def acme_outcome(system: System, settings: Settings, wait: float) -> list[str]:
    """After the proxy restarted with an ACME resolver: wait until each name is served
    with the CA's certificate or Traefik has logged why not, and say which, name by
    name. The hub answers either way, so this never fails the reload."""
    deadline = time.monotonic() + wait
    invocation = proxy_invocation(system)  # the start just made: asked once
    while True:
        now = states(settings, proxy_log(system, invocation))
        if all(s.issued or s.reason for s in now) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lines = []
    for s in now:
        if s.issued:
            lines.append(f"https: certificate from the ACME CA: {s.line()}")
        elif s.reason:
            lines.append(f"warning: https: the ACME CA gave no certificate for {s.line()}")
        else:
            lines.append(f"warning: https: no certificate from the ACME CA for {s.name} "
                         f"after {wait:.0f} s (still trying); then `hardway status`")
    if not all(s.issued for s in now):
        lines.append(f"  {HINT}")
    return lines
