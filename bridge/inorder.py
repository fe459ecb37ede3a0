"""Messages to one contact leave in the order they were written, while the work
before leaving (sealing, proof of work) overlaps: each takes a ``Turn`` in its key's
queue when it is written, and waits for it only to leave."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Turn:
    """One message's place in its contact's queue: ``wait()`` returns once every
    message queued before it has left (or failed); ``done()`` lets the next go."""

    __slots__ = ("_key", "_mine", "_order", "_prev")

    def __init__(self, order: InOrder[Any], key: Hashable, prev: asyncio.Future[None] | None,
                 mine: asyncio.Future[None]) -> None:
        self._order = order
        self._key = key
        self._prev = prev
        self._mine = mine

    async def wait(self) -> None:
        if self._prev is not None and not self._prev.done():
            await asyncio.wait((self._prev,))  # never cancels the one before, if we are

    def follows(self, other: Turn) -> bool:
        """This turn was taken right after ``other``, with nothing between."""
        return self._prev is not None and self._prev is other._mine

    def done(self) -> None:
        prev = self._prev
        if prev is None or prev.done():
            self._release()
        else:  # cancelled or failed before its turn: the next still waits for ours
            prev.add_done_callback(lambda _: self._release())

    def _release(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        self._order.forget(self._key, self._mine)


class InOrder(Generic[K]):
    """Per-key FIFO of turns: work for one key may overlap, its last step may not."""

    def __init__(self) -> None:
        self._last: dict[Hashable, asyncio.Future[None]] = {}

    def turn(self, key: K) -> Turn:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        prev = self._last.get(key)
        self._last[key] = mine
        return Turn(self, key, prev, mine)

    def forget(self, key: Hashable, fut: asyncio.Future[None]) -> None:
        if self._last.get(key) is fut:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)
