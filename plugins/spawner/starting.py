"""A queue for starting servers, shared by hardway's spawner classes (mixed into a
Spawner): one start per CPU at a time imports Jupyter, so that when a class logs in at
once most users get their server much sooner than if every start shared the CPU."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from traitlets import Integer, default
from traitlets.config import LoggingConfigurable

_starting: asyncio.Semaphore | None = None


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
        exponential backoff (which cost up to a second per spawn here).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        checks = 0
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.open_connection(ip, port)
            except OSError:
                checks += 1
                if checks % 10 == 0 and await self.poll() is not None:
                    return  # the server is gone: the hub reports the failure
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return
