"""Budgets for what the network can make a node hold or do, sans-IO (time is passed in).

* ``TokenBucket``: ``rate`` tokens a second up to ``burst``.
* ``Allowance``: a token bucket for one kind of cheap frame. What fits is done;
  what does not is ignored (throttled) and owed; a peer that owes more than
  ``drop_after`` is not slowing down and is dropped as a flood.
* ``ByteQueue``: a FIFO of frames capped in bytes, not in frames: one 64 KiB
  body and a thousand 35-byte frames are not the same load.
* ``MemoryBudget``: one number of bytes for the whole node, split into the
  parts the network fills: stored envelopes, outbound queues, requests in
  flight and the per-link memory of what each peer has.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; time is passed in."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def available(self, now: float) -> int:
        self._refill(now)
        return max(0, int(self.tokens))

    def take(self, n: float, now: float) -> bool:
        """Spend ``n`` tokens if there are that many; False (nothing spent) if not."""
        self._refill(now)
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


class Allowance(TokenBucket):
    """A bucket that may go into debt: throttle first, drop a peer that keeps on."""

    __slots__ = ("drop_after",)

    def __init__(self, rate: float, burst: float, now: float, drop_after: float) -> None:
        super().__init__(rate, burst, now)
        self.tokens = burst / 2  # a new link has earned half a burst: a reconnect buys less
        self.drop_after = drop_after

    def spend(self, n: int, now: float) -> int:
        """How many of ``n`` items may be handled now; the rest are owed all the same."""
        self._refill(now)
        allowed = min(n, max(0, int(self.tokens)))
        self.tokens -= n
        return allowed

    @property
    def flooded(self) -> bool:
        """The debt passed ``drop_after``: at the refill rate it takes that long to repay."""
        return self.tokens < -self.drop_after


class ByteQueue:
    """Frames in order, their total length capped; ``push`` says False when one would not fit."""

    __slots__ = ("_items", "bytes", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._items: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def fits(self, size: int) -> bool:
        return self.bytes + size <= self.limit

    def push(self, frame: bytes) -> bool:
        if not self.fits(len(frame)):
            return False
        self._items.append(frame)
        self.bytes += len(frame)
        return True

    def pop(self) -> bytes:
        frame = self._items.popleft()
        self.bytes -= len(frame)
        return frame

    def clear(self) -> int:
        """Drop everything; how many bytes were freed."""
        freed, self.bytes = self.bytes, 0
        self._items.clear()
        return freed


# What one item costs in RAM beyond its own bytes, measured with tracemalloc
# (Node.health()["memory"] shows the node's own figures):
STORE_OVERHEAD: Final = 1.45  # per stored byte of a RAM store: the cap on its raw bytes
# Per envelope, whatever its size, with a recipient tag of its own (the worst case;
# 631 B in a RAM store when tags are shared): the bytes object's header, the dict
# entry, the 42-byte index key, its expiry-heap entry and its prefix sum, the tag index
# entry and the two eviction-order entries (overall and per tag).
STORE_ITEM_BYTES: Final = 1_280  # a RAM store: 1,237 B measured, and the bytes header
SQLITE_ITEM_BYTES: Final = 1_230  # an SQLite store: about 1,210 B (bodies on disk)
ID_ENTRY_BYTES: Final = 160  # per remembered 32-byte id (bytes object + dict/set slot)
MIN_LINK_QUEUE: Final = 512 * 1024  # at least a few of the largest frames
MAX_LINK_QUEUE: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """The node's memory budget in bytes and what each part of it may use.

    Shares: stored envelopes 60 %, outbound queues of all links 20 %, requests
    in flight 5 %, per-link memory of the peer's ids 10 %; 5 % is slack for the
    tag index and the interpreter's own rounding. Only what peers can make grow
    is counted; the interpreter, the libraries and the key store are not.
    """

    total: int
    max_links: int

    def __post_init__(self) -> None:
        if self.total < 16 * 1024 * 1024 or self.max_links < 1:
            raise ValueError("a memory budget needs at least 16 MiB and one link")

    @property
    def store_bytes(self) -> int:
        """Raw envelope bytes a RAM store may hold."""
        return int(self.total * 0.60 / STORE_OVERHEAD)

    @property
    def store_ram(self) -> int:
        """RAM a RAM store may use in all: its envelopes' bytes and ``STORE_ITEM_BYTES``
        for each (a store of small envelopes is bounded by this, not by its bytes)."""
        return int(self.total * 0.60)

    @property
    def store_count(self) -> int:
        """Envelopes an SQLite store may index in RAM (the bodies are on disk)."""
        return int(self.total * 0.60 / SQLITE_ITEM_BYTES)

    @property
    def queue_bytes(self) -> int:
        """Outbound bytes queued on all links together."""
        return int(self.total * 0.20)

    @property
    def link_queue_bytes(self) -> int:
        """Outbound bytes queued on one link."""
        fair = self.queue_bytes // max(1, self.max_links // 4)
        return max(MIN_LINK_QUEUE, min(MAX_LINK_QUEUE, fair))

    @property
    def request_ids(self) -> int:
        """Ids asked of peers and not yet received, all links together."""
        return max(1024, int(self.total * 0.05 / ID_ENTRY_BYTES))

    @property
    def link_request_ids(self) -> int:
        return max(256, min(2048, self.request_ids // 8))

    @property
    def peer_has_ids(self) -> int:
        """Ids remembered per link as held by the peer (never announced back)."""
        return max(1024, min(50_000, int(self.total * 0.10 / ID_ENTRY_BYTES) // self.max_links))
