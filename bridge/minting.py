"""Stamps for version-2 envelopes (docs/stamps.md): taken from the pool minted ahead
when one is ready, minted at once when not, and the pool refilled in the background
once the daemon has used it (so an idle daemon that never sent spends nothing)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from bridge.core.stamp import Stamp, StampOrder, order
from bridge.core.stamppool import StampPool
from bridge.net.workers import WorkerPool
from bridge.tasks import TaskSet


class Minter:
    def __init__(self, pool: WorkerPool, clock: Callable[[], int], *, base_bits: int,
                 ttl: int, tasks: TaskSet) -> None:
        self.pool, self.clock, self.base_bits, self.ttl = pool, clock, base_bits, ttl
        self.tasks = tasks
        self.stamps = StampPool(life=ttl, min_life=min(ttl, ttl * 3 // 4))
        self.refilling = False

    async def _mint(self, wanted: StampOrder) -> Stamp:
        return wanted.minted(await self.pool.solve_pow(wanted.digest, wanted.bits))

    async def stamp_for(self, bucket: int) -> Stamp:
        """A stamp for an envelope of ``bucket``: one minted ahead if there is one
        (no wait), else minted now; the pool refills behind it."""
        now = self.clock()
        ready = self.stamps.take(bucket, now, self.base_bits)
        self.refill_soon()
        if ready is not None:
            return ready
        return await self._mint(order(bucket, now + self.ttl, now, self.base_bits,
                                      secrets.token_bytes))

    async def stamp_lasting(self, ttl: int, bucket: int) -> Stamp:
        """A stamp minted now for an envelope that lives ``ttl`` seconds (file chunks:
        the work for a 64 KiB bucket falls with its life, ``stamps.md``)."""
        now = self.clock()
        return await self._mint(order(bucket, now + min(ttl, self.ttl), now, self.base_bits,
                                      secrets.token_bytes))

    def refill_soon(self) -> None:
        if not self.refilling:
            self.refilling = True
            self.tasks.spawn(self._refill(), name="stamps")

    async def _refill(self) -> None:
        try:
            for wanted in self.stamps.wanted(self.clock(), self.base_bits, secrets.token_bytes):
                try:
                    self.stamps.add(await self._mint(wanted))
                except BaseException:
                    self.stamps.cancel(wanted)
                    raise
        finally:
            self.refilling = False
