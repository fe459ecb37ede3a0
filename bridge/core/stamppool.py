"""Stamps minted ahead and kept ready, in RAM only (``docs/stamps.md``).

A stamp on disk would be a record of when the person was about to write, so the
pool lives and dies with the daemon. Pure: the daemon asks ``wanted()`` for orders
to mint in idle time, gives the minted stamps back with ``add()``, and spends
with ``take()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bridge.core.checks import bits_required
from bridge.core.stamp import BUCKETS, Stamp, StampOrder, bucket_index, envelope_size, order

# The pool: stamps kept ready per size class, minted for DEFAULT_LIFE and spent
# while at least MIN_LIFE remains (an envelope's life is its stamp's).
DEFAULT_LIFE: Final = 2 * 24 * 3600
MIN_LIFE: Final = 36 * 3600
# bucket index -> stamps kept ready: 256 B, 1 KiB, and one 4 KiB for the first message
# of a session (its handshake block takes it to that size)
POOL_TARGET: Final = {0: 3, 1: 2, 2: 1}


def bits_to_spend(stamp: Stamp, now: int, base_bits: int) -> int:
    """What a relay asks of this stamp's envelope at ``now``."""
    return bits_required(envelope_size(stamp.bucket), stamp.expiry, now, base_bits)

class StampPool:
    """Ready stamps per size class, each spent once, the oldest first."""

    def __init__(self, target: dict[int, int] | None = None, *, life: int = DEFAULT_LIFE,
                 min_life: int = MIN_LIFE) -> None:
        self.target = dict(POOL_TARGET if target is None else target)
        self.life, self.min_life = life, min_life
        self._ready: dict[int, list[Stamp]] = {i: [] for i in range(len(BUCKETS))}
        self._minting: dict[int, int] = {i: 0 for i in range(len(BUCKETS))}

    def purge(self, now: int) -> None:
        """Forget stamps with too little life left to be worth spending."""
        for i, stamps in self._ready.items():
            self._ready[i] = [s for s in stamps if s.expiry - now >= self.min_life]

    def wanted(self, now: int, base_bits: int,
               random: Callable[[int], bytes]) -> list[StampOrder]:
        """Orders to mint so each size class reaches its target (counted as in
        progress until ``add`` or ``cancel``)."""
        self.purge(now)
        orders = []
        for i, want in self.target.items():
            missing = want - len(self._ready[i]) - self._minting[i]
            for _ in range(max(0, missing)):
                orders.append(order(BUCKETS[i], now + self.life, now, base_bits, random))
                self._minting[i] += 1
        return orders

    def add(self, stamp: Stamp) -> None:
        i = bucket_index(stamp.bucket)
        self._minting[i] = max(0, self._minting[i] - 1)
        self._ready[i].append(stamp)
        self._ready[i].sort(key=lambda s: s.expiry)  # spend the oldest first

    def cancel(self, minted_order: StampOrder) -> None:
        i = bucket_index(minted_order.bucket)
        self._minting[i] = max(0, self._minting[i] - 1)

    def take(self, bucket: int, now: int, base_bits: int) -> Stamp | None:
        """The oldest ready stamp for ``bucket`` with at least ``min_life`` left and
        enough work for ``base_bits`` (the network's minimum may have risen since it
        was minted), or None."""
        stamps = self._ready[bucket_index(bucket)]
        for k, s in enumerate(stamps):
            if s.expiry - now >= self.min_life and s.bits >= bits_to_spend(s, now, base_bits):
                return stamps.pop(k)
        return None

    def ready(self) -> dict[int, int]:
        return {BUCKETS[i]: len(s) for i, s in self._ready.items()}
