"""Envelopes stored but not yet durable, held back until the store's group commit.

The node hands an envelope on — to its subscribers, as a HAVE to its peers, as
a body to a peer that asked for it — only once the store has made it durable.
With the RAM store that is at once (``pending`` is always 0). With SQLite the
envelope waits here; one task flushes the store, so every envelope stored
while a commit runs joins the next one, and each batch is handed on as soon as
its commit returns. A failed commit leaves its envelopes waiting (the store
keeps their writes staged): the next commit retries them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.core.envelope import Envelope
from bridge.net.peerlink import PeerConnection
from bridge.store.index import Store
from bridge.tasks import TaskSet

# (envelope, its id, the link it came from or None, submitted here)
Durable = Callable[[Envelope, bytes, PeerConnection | None, bool], None]


class CommitGate:
    def __init__(self, store: Store, tasks: TaskSet, on_durable: Durable) -> None:
        self.store = store
        self.tasks = tasks
        self.on_durable = on_durable
        self.waiting: dict[bytes, tuple[Envelope, PeerConnection | None, bool]] = {}
        self._committer: asyncio.Task[None] | None = None

    def __contains__(self, envelope_id: object) -> bool:
        return envelope_id in self.waiting

    def stored(self, env: Envelope, source: PeerConnection | None, *, local: bool) -> None:
        """``store.add`` took ``env``: hand it on now if durable, else after the commit."""
        if not self.store.pending:
            self.on_durable(env, env.id, source, local)
            return
        self.waiting[env.id] = (env, source, local)
        if self._committer is None or self._committer.done():
            self._committer = self.tasks.spawn(self.commit(), name="group commit")

    async def commit(self) -> None:
        """Make what waits durable, a batch per commit, and hand each batch on."""
        while self.waiting:
            batch = list(self.waiting)  # the flush covers these and whatever joins meanwhile
            await self.store.flush()
            for eid in batch:
                self.settle(eid)

    def settle(self, envelope_id: bytes) -> None:
        """``envelope_id`` is durable: hand it on, unless that was done already."""
        item = self.waiting.pop(envelope_id, None)
        if item is not None:
            env, source, local = item
            self.on_durable(env, envelope_id, source, local)
