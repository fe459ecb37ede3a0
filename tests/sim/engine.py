"""The discrete-event engine: one virtual clock, one event heap, one seeded RNG.

Nothing here reads the machine's clock or its randomness, so a run is a pure
function of its parameters and seed. Events at the same virtual time run in the
order they were scheduled (a sequence number breaks ties), which keeps runs
reproducible across Python versions.

Virtual time ``now`` is seconds since the start of the run; the unix time the
core sees (HELLO clocks, envelope expiries) is ``T0 + now``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any, Final

T0: Final = 1_800_000_000  # the unix time at which every run starts


class Sim:
    __slots__ = ("_heap", "_seq", "events", "now", "rng")

    def __init__(self, seed: int) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0

    @property
    def unix(self) -> float:
        return T0 + self.now

    def at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` ``delay`` seconds from now."""
        self._seq += 1
        heapq.heappush(self._heap, (self.now + max(0.0, delay), self._seq, fn, args))

    def run(self, until: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until:
            t, _, fn, args = pop(heap)
            self.now = t
            self.events += 1
            fn(*args)
        self.now = until


class Channel:
    """One direction of a connection: serialisation at ``bandwidth``, then ``latency``.

    The connection is a TCP stream, so a lost segment does not lose a frame: it
    holds the frame (and, in order, every frame behind it) for a retransmission
    timeout. Frames are delivered in the order they were sent.
    """

    __slots__ = ("bandwidth", "busy_until", "last_arrival", "latency", "loss")

    def __init__(self, latency: float, bandwidth: float, loss: float) -> None:
        self.latency = latency
        self.bandwidth = bandwidth  # bytes per second
        self.loss = loss  # probability that a frame meets a retransmission
        self.busy_until = 0.0
        self.last_arrival = 0.0

    def arrival(self, now: float, size: int, rng: random.Random) -> float:
        start = max(now, self.busy_until)
        self.busy_until = start + size / self.bandwidth
        t = self.busy_until + self.latency
        if self.loss and rng.random() < self.loss:
            t += max(0.2, 4 * self.latency)  # one retransmission timeout (RFC 6298 minimum-ish)
        t = max(t, self.last_arrival)  # in order
        self.last_arrival = t
        return t
