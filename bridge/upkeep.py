"""The service's lifecycle and upkeep: load the keys, watch our tags, announce,
and once an epoch (or hourly) rotate prekeys, watch the new epoch's tags,
forget what expired and announce again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.core import tags
from bridge.identities import IdentityBook
from bridge.inbox import Inbox
from bridge.outbox import Outbox
from bridge.peerbook import NodeLike
from bridge.tasks import TaskSet

MAINTENANCE_INTERVAL = 3600


class Upkeep:
    def __init__(self, ids: IdentityBook, inbox: Inbox, outbox: Outbox, node: NodeLike,
                 tasks: TaskSet, clock: Callable[[], int], *,
                 loaded: Callable[[], None] = lambda: None) -> None:
        self.ids, self.inbox, self.outbox, self.node = ids, inbox, outbox, node
        self.tasks, self.clock = tasks, clock
        self.loaded = loaded  # the keys are loaded: what depends on them may load now
        self._unsubscribe: Callable[[], None] | None = None
        self._announced_epoch = 0

    async def start(self, *, deliver: bool = True) -> None:
        self.ids.keystore.load()
        self.loaded()
        self.ids.rotate_all()
        self.inbox.rewatch()
        if deliver:
            self.start_delivery()
        for rec in self.ids.records():
            self.outbox.announce_soon(rec)
        self._announced_epoch = tags.epoch_of(self.clock())
        self.tasks.spawn(self._loop(), name="upkeep")

    def start_delivery(self) -> None:
        """Watch the node for our envelopes, beginning with those it already holds."""
        if self._unsubscribe is None:
            self._unsubscribe = self.node.subscribe(self.inbox.on_envelope)
            self.inbox.subscribe_to(list(self.node.iter_stored()))

    async def _loop(self) -> None:
        while True:  # wake at the next epoch boundary (tags change then) or hourly
            now = self.clock()
            await asyncio.sleep(min(MAINTENANCE_INTERVAL, tags.EPOCH - now % tags.EPOCH + 1))
            await self.maintain()

    async def maintain(self) -> None:
        """Rotate prekeys (deleting expired secrets), watch the new epoch's tags,
        announce new prekeys, and announce daily so contacts who come online later
        still find the current prekeys and endpoint."""
        rotated = self.ids.rotate_all()
        self.inbox.rewatch()
        self.inbox.purge(self.clock())
        self.inbox.sessions.tidy(self.clock())
        epoch = tags.epoch_of(self.clock())
        again, self._announced_epoch = epoch != self._announced_epoch, epoch
        for rec in self.ids.records():
            if again or rec in rotated:
                self.outbox.announce_soon(rec)

    @property
    def delivering(self) -> bool:
        return self._unsubscribe is not None

    def stop_delivery(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
