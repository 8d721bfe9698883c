"""A queue for starting servers, shared by hardway's spawner classes (mixed into a
Spawner): one start per CPU at a time imports Jupyter, so that when a class logs in at
once most users get their server much sooner than if every start shared the CPU.

It also says why a server stopped when nobody stopped it: a server that dies while
starting fails the start at once with the reason (the user reads it on the spawn page,
instead of waiting for the hub's HTTP timeout and a bare "status 1"), and one that dies
later leaves its reason for the "not running" page (hardway's template shows it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from traitlets import Integer, default
from traitlets.config import LoggingConfigurable

_starting: asyncio.Semaphore | None = None
#: why each (user, server) last stopped by itself: kept here, not on the spawner, which
#: the hub drops once the server is stopped
_stops: dict[tuple[str, str], str] = {}


class ServerStopped(Exception):
    """The server exited while starting; the message is for the user. (The hub shows a
    SpawnException's message; one is raised from this by :meth:`StartQueue.failed`.)"""


class StartQueue(LoggingConfigurable):
    max_starting = Integer(
        config=True,
        help="""How many servers may be starting (importing Jupyter) at the same moment.

        A server start is ~3 s of CPU. When a class logs in at once, starting all servers
        together shares the CPU evenly and so *everyone* waits as long as the last one;
        letting one per core start at a time gives the same total time but most users
        their server much sooner. Default: the number of CPUs.""")
    max_starting_wait = Integer(
        30, config=True,
        help="Seconds a start may hold its place in the queue before the next one goes.")

    @default("max_starting")
    def _default_max_starting(self) -> int:
        return os.cpu_count() or 2

    async def queued(self, start: Callable[[], Awaitable[Any]]) -> Any:
        """``start()`` (the spawner's own) holding a place in the queue until the server
        accepts connections, or ``max_starting_wait`` seconds; then its place goes to the
        next start and this one keeps waiting for its server outside the queue."""
        global _starting
        _stops.pop(self._stop_key(), None)
        if _starting is None:
            _starting = asyncio.Semaphore(self.max_starting)
        async with _starting:
            result = await start()
            if result is None:
                return None
            try:
                await asyncio.wait_for(asyncio.shield(self.wait_for_port(*result)),
                                       self.max_starting_wait)
                return result
            except asyncio.TimeoutError:
                pass  # slow to start: let the next one go, keep waiting outside the queue
        await self.wait_for_port(*result)
        return result

    async def wait_for_port(self, ip: str, port: int) -> None:
        """Return as soon as the server accepts connections (checked every 0.1 s).

        The hub then finds it up at its first check, instead of at the next step of its
        exponential backoff (which cost up to a second per spawn here). Every second the
        spawner is asked whether the server is still there: one that died fails the start
        at once (a connection to a dead container's address can take seconds to fail, so
        the time, not the number of tries, decides).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        next_poll = loop.time() + 1
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 1)
            except (OSError, asyncio.TimeoutError):
                if loop.time() >= next_poll:
                    next_poll = loop.time() + 1
                    status = await self.poll()
                    if status is not None:
                        raise self.failed(self.last_stop or f"it exited ({status})") from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return

    def failed(self, why: str) -> Exception:
        """The exception that fails a start, its message shown to the user."""
        message = f"Your server stopped while it was starting: {why}"
        try:
            from jupyterhub.spawner import SpawnException
        except ImportError:  # unit tests without JupyterHub
            return ServerStopped(message)
        e = SpawnException(message, reason="exited", status_code=503)
        # what the hub's spawn page and "not running" page show (no traceback is logged)
        e.jupyterhub_message = message  # type: ignore[attr-defined]
        return e

    async def describe_stop(self, status: Any) -> str:
        """Why the server stopped, in words for its user ("" when there is nothing to
        say: it was stopped on purpose). Spawner classes say more (exit status, memory)."""
        return f"it exited ({status})"

    async def poll(self) -> Any:
        """The spawner's own poll; a server found stopped leaves its reason in
        :attr:`last_stop` (once per start: the container or unit may be gone later)."""
        status = await super().poll()  # type: ignore[misc]
        if status is not None and not self.last_stop:
            why = ""
            try:
                why = await self.describe_stop(status)
            except Exception as e:  # a report that fails must not break polling
                self.log.warning("could not tell why %s stopped: %s", self.user.name, e)
            if why:
                _stops[self._stop_key()] = why
                self.log.warning("%s's server stopped by itself: %s", self.user.name, why)
        return status

    @property
    def last_stop(self) -> str:
        """Why the server last stopped by itself, for the user ("" when it did not)."""
        return _stops.get(self._stop_key(), "")

    def _stop_key(self) -> tuple[str, str]:
        return (self.user.name, getattr(self, "name", "") or "")


class StopNotes:
    """The "not running" page's template variable ``hardway_stops``: ``.of(user, name)``
    says why that user's server stopped by itself, or "". (An object, not a function:
    JupyterHub calls a callable template variable with the viewer, who may be an admin
    looking at another user's page.)"""

    @staticmethod
    def of(user: Any, server_name: str = "") -> str:
        why = _stops.get((getattr(user, "name", None), server_name or ""), "")
        return f"Your server stopped by itself: {why}" if why else ""


#: hardway's templates (the "not running" page with the reason a server stopped)
TEMPLATES = Path(__file__).parent / "templates"


def show_stops(c: Any) -> None:
    """For a hardway_hub_config_object hook: the "not running" page says why the user's
    server stopped by itself (the template variable is an object: hub.json, being JSON,
    cannot hold it)."""
    hub = c.JupyterHub
    paths = list(hub["template_paths"]) if "template_paths" in hub else []
    hub.template_paths = [str(TEMPLATES), *paths]
    variables = dict(hub["template_vars"]) if "template_vars" in hub else {}
    hub.template_vars = {**variables, "hardway_stops": StopNotes()}
