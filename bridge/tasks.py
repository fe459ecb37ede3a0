"""Background tasks with an owner: one way to start them, to hear that one failed,
and to stop them all.

Every part that runs work in the background (the service, the node, the XMPP
gateway and component, vanity searches) keeps a ``TaskSet``. A task that ends in
an exception is never dropped silently: an expected failure (a ``ParanoimError``,
whose text a person can read) is logged as a warning, anything else as an error
with its traceback, and either is passed to ``on_error`` when the owner keeps a
list of recent errors to show. ``close()`` cancels what still runs and waits
for it, so stopping a part leaves no task behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from bridge.core.errors import ParanoimError

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSet:
    def __init__(self, owner: str, *, on_error: Callable[[str], None] | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.owner = owner
        self.on_error = on_error
        self.log = logger or log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str = "") -> asyncio.Task[T]:
        """Run ``coro`` in the background; its failure is logged, never lost."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"the {self.owner} has stopped; no new task may start")
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        what = task.get_name()
        if isinstance(exc, ParanoimError):
            self.log.warning("%s: %s failed: %s", self.owner, what, exc)
        else:
            self.log.error("%s: %s failed: %r", self.owner, what, exc, exc_info=exc)
        if self.on_error is not None:
            self.on_error(f"background task failed: {exc}")

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def close(self) -> None:
        """Cancel every task still running and wait until all have ended."""
        self._closed = True
        await self.cancel_all()

    async def cancel_all(self) -> None:
        """Cancel and wait for what runs now; new tasks may still start later."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
