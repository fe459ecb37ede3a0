"""How deep a node carries: its shard prefixes chosen from the traffic it takes in.

There is no network-wide number of shards to agree on (docs/sharding.md, "How k
grows"). A node that carries its shards automatically measures the bytes it stores a
day under what it carries and compares them with its budget:

* above the budget, it **deepens** by one bit, keeping the child prefix that holds each
  of its own shard keys (its identities' shards), which halves its intake;
* at or below a quarter of the budget, it **goes back up** one bit: the parent takes
  about twice what the child does, so the parent would fit in half the budget. The gap
  between the two thresholds is the hysteresis that keeps the depth from flapping;
* never deeper while a child it would keep has fewer than ``floor`` known carriers
  (a thin shard does not survive churn and droppers, and a node deepening alone would
  leave its own users' envelopes with nobody else to hold them), never while the
  measurement is younger than ``settle`` seconds, and never to more than
  ``MAX_PREFIXES`` prefixes.

The depth follows the node's own traffic, never what peers claim, so nobody can make an
honest node leave a shard by announcing more carriers of it or less traffic in it
("Threats particular to shards"). Pure: the caller passes the clock and the counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bridge.core.shards import KEY_BITS, MAX_PREFIXES, Prefix, canonical, of_key

DAY: Final = 86_400.0
FLOOR: Final = 16  # carriers a prefix needs in the address book before a node narrows to it
WINDOW: Final = 6 * 3600.0  # the intake is measured over the last six hours
SETTLE: Final = 3600.0  # at least an hour of measurement at a depth before leaving it
BUCKET: Final = 300.0  # the meter adds up its samples per five minutes


@dataclass(frozen=True, slots=True)
class DepthRule:
    """What a node will carry: ``budget`` bytes stored a day under its prefixes."""

    budget: int
    floor: int = FLOOR
    settle: float = SETTLE
    max_depth: int = KEY_BITS

    def __post_init__(self) -> None:
        if self.budget <= 0 or self.floor < 0 or self.settle < 0:
            raise ValueError("a depth rule needs a positive budget")
        if not 0 <= self.max_depth <= KEY_BITS:
            raise ValueError(f"a depth is 0 to {KEY_BITS}")


@dataclass(slots=True)
class Intake:
    """Bytes taken in over a sliding window, in buckets (bounded: window ÷ bucket)."""

    window: float = WINDOW
    bucket: float = BUCKET
    since: float | None = None  # when the measurement began (the last change of depth)
    _buckets: deque[list[float]] = field(default_factory=deque)  # [start, bytes]

    def start(self, now: float) -> None:
        """Begin again: what was measured at another depth says nothing of this one."""
        self.since = now
        self._buckets.clear()

    def add(self, now: float, nbytes: int) -> None:
        if self.since is None:
            self.start(now)
        if self._buckets and now - self._buckets[-1][0] < self.bucket:
            self._buckets[-1][1] += nbytes
        else:
            self._buckets.append([now, float(nbytes)])
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] < now - self.window:
            self._buckets.popleft()

    def measured_for(self, now: float) -> float:
        """Seconds this measurement covers (at most the window)."""
        return 0.0 if self.since is None else min(self.window, max(0.0, now - self.since))

    def per_day(self, now: float) -> float:
        """Bytes a day at the rate seen over what the measurement covers."""
        self._forget(now)
        span = self.measured_for(now)
        if span <= 0:
            return 0.0
        return sum(b for _, b in self._buckets) * DAY / span


def carried(keys: Iterable[int], depth: int) -> tuple[Prefix, ...]:
    """The prefixes of ``depth`` bits that hold the node's own shard keys."""
    return canonical(of_key(k, depth) for k in keys)


def fits(keys: Iterable[int], depth: int) -> bool:
    """Whether the own keys need at most ``MAX_PREFIXES`` prefixes at ``depth``."""
    return len({k >> (KEY_BITS - depth) for k in keys}) <= MAX_PREFIXES


def next_depth(depth: int, keys: tuple[int, ...], per_day: float, measured_for: float,
               rule: DepthRule, carriers: Callable[[Prefix], int]) -> int:
    """The depth to carry next: one deeper, one shallower or the same.

    ``per_day`` is the measured intake under ``carried(keys, depth)``; ``carriers``
    counts the known carriers of a prefix (the address book's).
    """
    if not keys:
        raise ValueError("a node carries at least one shard key's prefix")
    if measured_for < rule.settle:
        return depth
    if per_day > rule.budget:
        deeper = depth + 1
        if deeper > rule.max_depth or not fits(keys, deeper):
            return depth
        if all(carriers(p) >= rule.floor for p in carried(keys, deeper)):
            return deeper
        return depth
    if depth > 0 and per_day * 2 <= rule.budget / 2:
        return depth - 1
    return depth
