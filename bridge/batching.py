"""Messages to one contact that are written while the one before is being sealed
leave together, as one batch in one session envelope (``bridge.core.batch``).

Each message takes its turn in its contact's queue when it is written (``InOrder``),
as every other envelope does. A contact's queue has one drainer at a time: it takes
the messages waiting, as many as fit (``MAX_RECORDS``, ``MAX_BATCH_BYTES``) and only
as long as their turns follow one another — a chat state, a file chunk or anything
else written between two messages ends the batch, so nothing overtakes what was
written before it — seals them in one envelope, and hands it over to leave at the
first message's turn while it forms the next batch. A message written when nothing
is waiting leaves alone, at once: batching adds no wait, it only collects what would
otherwise wait behind the seal and the stamp before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bridge.core.batch import MAX_BATCH_BYTES, MAX_RECORDS, batch_size, encode_batch, record_id
from bridge.inorder import Turn
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# (key, payload) -> the sealed envelope, not yet sent; raises what sealing raises
Seal = Callable[[K, bytes], Awaitable[bytes]]
# the sealed envelope -> its id, once it has left (published or delivered)
Deliver = Callable[[K, bytes], Awaitable[bytes]]


@dataclass(slots=True)
class _Item:
    encoded: bytes
    sent_at_ms: int
    turn: Turn
    done: asyncio.Future[bytes] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Batches(Generic[K]):
    def __init__(self, seal: Seal[K], deliver: Deliver[K], tasks: TaskSet) -> None:
        self._seal = seal
        self._deliver = deliver
        self._tasks = tasks
        self._queues: dict[K, deque[_Item]] = {}
        self.sent = {"envelopes": 0, "records": 0}  # for the health page and benchmarks

    async def send(self, key: K, encoded: bytes, sent_at_ms: int, turn: Turn) -> bytes:
        """Queue one encoded message (its ``turn`` taken when it was written); its
        record id once it has left. Raises what sealing or delivery raised."""
        item = _Item(encoded, sent_at_ms, turn)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._tasks.spawn(self._drain(key, queue), name="batches")
        queue.append(item)
        return await asyncio.shield(item.done)  # a cancelled writer does not unsend it

    async def _drain(self, key: K, queue: deque[_Item]) -> None:
        try:
            while queue:
                batch = _take(queue)
                await self._one(key, batch)
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            for item in queue:  # only after a cancellation (the daemon stopping)
                _fail(item, asyncio.CancelledError())

    async def _one(self, key: K, batch: list[_Item]) -> None:
        payload = (batch[0].encoded if len(batch) == 1
                   else encode_batch([i.encoded for i in batch], batch[0].sent_at_ms))
        try:
            raw = await self._seal(key, payload)
        except BaseException as exc:
            for item in batch:
                _fail(item, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._tasks.spawn(self._leave(key, batch, raw), name="batch out")

    async def _leave(self, key: K, batch: list[_Item], raw: bytes) -> None:
        try:
            await batch[0].turn.wait()
            env_id = await self._deliver(key, raw)
        except BaseException as exc:
            for item in batch:
                _fail(item, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.sent["envelopes"] += 1
        self.sent["records"] += len(batch)
        for n, item in enumerate(batch):
            item.turn.done()
            if not item.done.done():
                item.done.set_result(record_id(env_id, n, len(batch)))


def _take(queue: deque[_Item]) -> list[_Item]:
    """The longest run at the head of ``queue`` that may travel as one batch."""
    batch = [queue.popleft()]
    sizes = [len(batch[0].encoded)]
    while queue and len(batch) < MAX_RECORDS:
        nxt = queue[0]
        if not nxt.turn.follows(batch[-1].turn):
            break
        if batch_size([*sizes, len(nxt.encoded)]) > MAX_BATCH_BYTES:
            break
        batch.append(queue.popleft())
        sizes.append(len(nxt.encoded))
    return batch


def _fail(item: _Item, exc: BaseException) -> None:
    item.turn.done()
    if not item.done.done():
        if isinstance(exc, asyncio.CancelledError):
            item.done.cancel()
        else:
            item.done.set_exception(exc)
