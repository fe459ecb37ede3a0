"""What the daemon is made of: parts that start and stop, on one exit stack.

A part has a name (what the log calls it), ``start`` and ``stop``. ``Parts.enter``
puts the part's stop on an ``AsyncExitStack`` *before* starting it, so
closing the stack stops every part in the reverse order of starting, by
construction, and a part that fails half-way through its own start is stopped
too: ``stop`` must therefore be safe on a part whose start failed or never
finished. Each stop is bounded in time and a failing one is logged, never
raised, so one stuck part cannot keep the others (or the lock) from going.
Start and stop times are logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("bridge.daemon")
STOP_STEP_TIMEOUT = 10.0


class Part(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Action = Callable[[], Awaitable[object] | object]


async def _call(action: Action | None) -> None:
    result = action() if action is not None else None
    if inspect.isawaitable(result):
        await result


class Step:
    """A part made of two callables, plain or async, for the small ones (a file)."""

    def __init__(self, name: str, start: Action | None = None,
                 stop: Action | None = None) -> None:
        self.name = name
        self._start = start
        self._stop = stop

    async def start(self) -> None:
        await _call(self._start)

    async def stop(self) -> None:
        await _call(self._stop)


class Parts:
    """The started parts, stopped in reverse by ``close``."""

    def __init__(self, stop_timeout: float = STOP_STEP_TIMEOUT) -> None:
        self.stop_timeout = stop_timeout
        self._stack = contextlib.AsyncExitStack()
        self._t0 = time.monotonic()

    async def enter(self, part: Part) -> None:
        self._stack.push_async_callback(self._stop_one, part)
        t = time.monotonic()
        await part.start()
        log.debug("%s started in %.3f s (%.3f s since the start began)", part.name,
                  time.monotonic() - t, time.monotonic() - self._t0)

    async def step(self, name: str, coro: Awaitable[object]) -> None:
        """A start step with nothing to stop (waiting for the worker pool, say), timed."""
        t = time.monotonic()
        await coro
        log.debug("%s in %.3f s", name, time.monotonic() - t)

    async def _stop_one(self, part: Part) -> None:
        t = time.monotonic()
        try:
            await asyncio.wait_for(part.stop(), self.stop_timeout)
        except Exception:
            log.exception("stopping the %s failed", part.name)
            return
        log.debug("%s stopped in %.3f s", part.name, time.monotonic() - t)

    async def close(self) -> None:
        await self._stack.aclose()
