"""The gate in front of the proxy's ports: the command systemd starts for the proxy
service. Standard library only (the system's python3 runs it as the proxy's user).

systemd holds the proxy's listening sockets, so a connection is never refused while
Traefik restarts; but a Traefik that has just started accepts connections before it has
loaded its routes and certificates (it closes a TLS handshake, or answers 404), and one
that is stopping may take a connection it no longer serves. So the gate *holds* the
sockets whenever no loaded Traefik serves them: a socket filter drops new connection
attempts (SYNs), which clients send again after about a second, instead of letting them
reach a Traefik that cannot answer them. Nothing is refused and nothing is cut; a
visitor arriving during a restart waits a second or three.

``start [options] -- TRAEFIK ARGS...`` (ExecStart): hold the sockets systemd passed,
leave a watcher behind, and become Traefik (same PID: systemd's main process). The
watcher waits until Traefik has loaded its dynamic configuration (its API router, which
comes from the same file directory as every route, answers "401" rather than "404"; with
TLS, the certificate served for the configured name is no longer Traefik's placeholder
when one is stored), releases the sockets and tells systemd the proxy is ready. When
Traefik dies, however it dies, the watcher holds the sockets at once.

Attaching a socket filter takes CAP_NET_ADMIN on some kernels, so systemd gives the
gate that one capability (as the proxy's user, never root) and the gate clears it before
it becomes Traefik: Traefik runs with no capability, the watcher with that one only.

``stop`` (ExecStop, before systemd signals Traefik): hold the sockets and wait until
Traefik has taken every connection already queued, so the Traefik that is stopping has
none left to drop and the next one starts with an empty queue.
"""

from __future__ import annotations

import array
import http.client
import json
import os
import select
import signal
import socket
import ssl
import struct
import sys
import time

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
#: local ports the gate's own TLS probe connects from: the hold lets these through (they
#: lie above Linux's ephemeral range, 32768-60999, so no other client uses them by chance)
PROBE_PORTS = range(61000, 61008)
PLACEHOLDER = b"TRAEFIK DEFAULT CERT"
#: the longest the gate waits for Traefik to load before letting connections in anyway
LOAD_LIMIT = 20.0
PID_FILE = "gate.pid"


def log(message: str) -> None:
    print(f"hardway-gate: {message}", file=sys.stderr, flush=True)


def hold_program() -> array.array:
    """Classic BPF over the TCP header: keep a segment from the probe ports, drop the rest
    (a listening socket sees only SYNs and handshake ACKs)."""
    lo, hi = PROBE_PORTS[0], PROBE_PORTS[-1]
    insns = [
        (0x28, 0, 0, 0),           # ldh [0]: the source port
        (0x35, 0, 2, lo),          # jge lo ? next : drop
        (0x25, 1, 0, hi),          # jgt hi ? drop : keep
        (0x06, 0, 0, 0xFFFFFFFF),  # keep
        (0x06, 0, 0, 0),           # drop
    ]
    return array.array("B", b"".join(struct.pack("=HBBI", *i) for i in insns))


def hold(sockets: list[socket.socket]) -> None:
    program = hold_program()
    address, size = program.buffer_info()
    fprog = struct.pack("@HP", size // 8, address)
    for s in sockets:
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def release(sockets: list[socket.socket]) -> None:
    for s in sockets:
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        except OSError:
            pass  # nothing attached


def queued(s: socket.socket) -> int:
    """Connections in a listening socket's accept queue (tcpi_unacked, for a listener)."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 64)
    return struct.unpack_from("=8xIIIII", info)[4]


def passed_sockets() -> list[socket.socket]:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=fd) for fd in range(3, 3 + count)]


def notify(message: str) -> None:
    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return
    if where.startswith("@"):
        where = "\0" + where[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), where)


def api_loaded(port: int) -> bool:
    """Traefik's API router comes from the watched rules directory and asks for
    credentials: "401" once that directory is loaded, "404" before."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/api/overview")
        return conn.getresponse().status == 401
    except OSError:
        return False
    finally:
        conn.close()


def stored(acme_store: str, name: str) -> bool:
    """Whether Traefik's ACME store holds a certificate for ``name`` (then it must be
    served before connections come in; without one, the placeholder is what there is)."""
    try:
        with open(acme_store, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    for resolver in data.values() if isinstance(data, dict) else ():
        for cert in (resolver or {}).get("Certificates") or ():
            domain = cert.get("domain") or {}
            if name == domain.get("main") or name in (domain.get("sans") or ()):
                return True
    return False


def placeholder_served(host: str, port: int, name: str) -> bool | None:
    """Whether the proxy serves its placeholder for ``name`` (None: no handshake), asked
    from a probe port so the hold lets the question through."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for local in PROBE_PORTS:
        raw = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # close with a reset: no TIME_WAIT left on the probe port
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.settimeout(1)
        try:
            raw.bind(("", local))
        except OSError:
            raw.close()
            continue
        try:
            raw.connect((host, port))
            with ctx.wrap_socket(raw, server_hostname=name) as conn:
                der = conn.getpeercert(binary_form=True) or b""
            return PLACEHOLDER in der
        except OSError:
            return None
        finally:
            raw.close()
    return None


def wait_loaded(pid: int, api_port: int, probe: str | None, sni: str | None,
                acme_store: str | None) -> str:
    deadline = time.monotonic() + LOAD_LIMIT
    want_cert = bool(probe and sni and (acme_store is None or stored(acme_store, sni)))
    host, _, port = (probe or "").rpartition(":")
    while time.monotonic() < deadline:
        if not alive(pid):
            return "Traefik exited"
        if api_loaded(api_port) and (not want_cert or placeholder_served(
                host.strip("[]") or "127.0.0.1", int(port), sni or "") is False):
            return ""
        time.sleep(0.02)
    return f"Traefik had not loaded its routes after {LOAD_LIMIT:.0f} s"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead too (Traefik's parent is systemd, which reaps it at once)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def watch(pid: int, sockets: list[socket.socket], args: dict[str, str | None]) -> None:
    """The watcher: release once Traefik is loaded, hold when it dies or is stopped."""
    stopping = []
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGUSR1, lambda *_: stopping.append("stop"))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("term"))
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        with open(os.path.join(runtime, PID_FILE), "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    why = wait_loaded(pid, int(args["api_port"] or 0), args["probe"], args["sni"],
                      args["acme_store"])
    if why:
        log(f"{why}; letting connections in anyway")
    if not stopping and alive(pid):
        release(sockets)
        notify(f"READY=1\nMAINPID={pid}\nSTATUS=routes loaded; serving")
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while not stopping:
        if not alive(pid):
            break
        ready, _, _ = select.select([r] + ([pidfd] if pidfd is not None else []), [], [],
                                    None if pidfd is not None else 0.05)
        if pidfd in ready:
            break
    hold(sockets)
    if stopping and stopping[0] == "stop":
        drain(sockets)


def drain(sockets: list[socket.socket]) -> None:
    """Wait until Traefik has accepted every queued connection, and a moment more for it
    to hand the last ones to its HTTP server, before it is told to stop."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(queued(s) for s in sockets):
        time.sleep(0.01)
    time.sleep(0.1)


def drop_capabilities() -> None:
    """Clear the ambient set: Traefik, a binary with no file capabilities, then starts
    with none permitted or effective (and NoNewPrivileges keeps it so)."""
    import ctypes

    pr_cap_ambient, clear_all = 47, 4
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_cap_ambient, clear_all, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot clear the ambient capabilities")


def start(argv: list[str]) -> None:
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1:]
    args: dict[str, str | None] = {"api_port": None, "probe": None, "sni": None,
                                   "acme_store": None}
    for opt in opts:
        key, _, value = opt.removeprefix("--").partition("=")
        args[key.replace("-", "_")] = value
    sockets = passed_sockets()
    if sockets:
        hold(sockets)
    pid = os.getpid()
    child = os.fork()
    if child == 0:
        if os.fork() == 0:  # the watcher, a child of the service manager: no zombie
            os.setsid()
            try:
                watch(pid, sockets, args)
            except BaseException as e:  # never leave the ports held, nor systemd waiting
                release(sockets)
                notify(f"READY=1\nMAINPID={pid}")
                log(f"watcher failed ({e}); released the ports")
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    drop_capabilities()
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # the gate says
    os.execve(command[0], command, env)


def stop() -> None:
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    try:
        with open(os.path.join(runtime, PID_FILE), encoding="ascii") as f:
            watcher = int(f.read().strip())
        os.kill(watcher, signal.SIGUSR1)
    except (OSError, ValueError):
        return  # no watcher: nothing is held to drain
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and alive(watcher):
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        start(argv[1:])
    elif argv[:1] == ["stop"]:
        stop()
    else:
        log("usage: gate.py start [--api-port=P --probe=HOST:PORT --sni=NAME "
            "--acme-store=PATH] -- TRAEFIK ARGS... | gate.py stop")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
