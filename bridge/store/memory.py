"""The RAM store (the default): nothing of it ever touches disk.

Bounded by bytes and by count; when full, the envelope that expires first is
evicted (it has the least time left to be useful), and a newcomer that would
itself be the first to go is refused instead. Per envelope it holds the raw
bytes, one dict entry keyed by the id and one 40-byte index key, so a stored
1 KiB envelope costs little more than its own size (measured in
tests/bench/bench_gossip.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from bridge.core.envelope import Envelope
from bridge.store.index import SortedIndex, TagIndex

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_COUNT = 500_000


class MemoryStore:
    kind = "memory"

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_count: int = DEFAULT_MAX_COUNT
    ) -> None:
        self.index = SortedIndex()
        self.tags = TagIndex()
        self.max_bytes = max_bytes
        self.max_count = max_count
        self._bodies: dict[bytes, bytes] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def __contains__(self, envelope_id: object) -> bool:
        return envelope_id in self._bodies

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def pending(self) -> int:
        return 0  # nothing here is ever written anywhere

    async def flush(self) -> None:
        return None

    def add(self, env: Envelope, now: int) -> bool:
        eid = env.id
        if eid in self._bodies or env.expiry <= now:
            return False
        size = len(env.raw)
        if size > self.max_bytes or self.max_count < 1:
            return False
        while len(self._bodies) >= self.max_count or self._bytes + size > self.max_bytes:
            first = self.index.first()
            if first is None or int.from_bytes(first[:8], "big") >= env.expiry:
                return False  # the newcomer would be the first to be evicted
            self._evict(1)
        self._bodies[eid] = env.raw
        self.index.add(env.expiry, eid)
        self.tags.add(env.tag, eid)
        self._bytes += size
        return True

    def get(self, envelope_id: bytes) -> bytes | None:
        return self._bodies.get(envelope_id)

    def purge(self, now: int) -> int:
        n = self.index.count_expired(now)
        if n:
            self._evict(n)
        return n

    def iter_raw(self) -> Iterator[bytes]:
        for key in list(self.index.iter_keys()):
            raw = self._bodies.get(key[8:])
            if raw is not None:
                yield raw

    def close(self) -> None:
        self._bodies.clear()
        self.index = SortedIndex()
        self.tags.clear()
        self._bytes = 0

    def _evict(self, count: int) -> None:
        for key in self.index.pop_front(count):
            raw = self._bodies.pop(key[8:], None)
            self.tags.remove(key[8:])
            if raw is not None:
                self._bytes -= len(raw)
