"""Scenarios shared by the integration tests and the benchmarks."""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time

from hubclient import HubUser


@dataclasses.dataclass
class ClassResult:
    users: int
    wall: float
    durations: list[float]
    failures: dict[str, str]

    def figures(self) -> dict[str, object]:
        d = sorted(self.durations)
        p95 = d[min(len(d) - 1, round(0.95 * len(d)) - 1)] if d else None
        return {"users": self.users, "ok": len(d), "failed": len(self.failures),
                "wall_s": round(self.wall, 2),
                "p50_s": round(statistics.median(d), 2) if d else None,
                "p95_s": round(p95, 2) if p95 is not None else None,
                "max_s": round(d[-1], 2) if d else None,
                "how": "N threads released together: login form, token, spawn, wait until "
                       "the server answers through the proxy, kernel 1+1; time per user "
                       "from login to the kernel's reply"}


def class_arrives(base: str, n: int, prefix: str = "student",
                  admin: HubUser | None = None) -> ClassResult:
    """``n`` new users log in and start a server at the same moment. ``admin`` first adds
    their names to the hub, as an instructor does on the admin page (the default
    authenticator lets no unknown name in)."""
    if admin is not None:
        admin.allow(*(f"{prefix}{i:02d}" for i in range(1, n + 1)))
    barrier = threading.Barrier(n)
    durations: list[float] = []
    failures: dict[str, str] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        name = f"{prefix}{i:02d}"
        u = HubUser(base, name, f"pw-{name}-long-enough")
        barrier.wait()
        t0 = time.monotonic()
        try:
            u.login()
            u.make_token()
            u.start_server(timeout=600)
            reply = u.execute("1+1", timeout=120)
            if reply != "2":
                raise AssertionError(f"kernel said {reply!r}")
            with lock:
                durations.append(time.monotonic() - t0)
        except Exception as e:
            with lock:
                failures[name] = f"{type(e).__name__}: {e}"[:500]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, n + 1)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ClassResult(n, time.monotonic() - t0, durations, failures)
