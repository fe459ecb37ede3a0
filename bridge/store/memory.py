"""The RAM store (the default): nothing of it ever touches disk.

Bounded by bytes and by count, and per recipient tag by a share of the bytes;
when full, the envelope whose work buys the least per byte per second of its
remaining life is evicted, and a newcomer worth less than it is refused instead
(``bridge.store.values.ValueQueue``). Per envelope it holds the raw bytes, one
dict entry keyed by the id, one 42-byte index key (and its expiry entry) and one
eviction entry.
"""

from __future__ import annotations

from collections.abc import Iterator

from bridge.core.envelope import Envelope
from bridge.core.shards import shard_of_tag
from bridge.store.index import SortedIndex, TagIndex, key_id, sorted_by_expiry
from bridge.store.values import ValueQueue

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_COUNT = 500_000


class MemoryStore:
    kind = "memory"

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_count: int = DEFAULT_MAX_COUNT
    ) -> None:
        self.index = SortedIndex()
        self.tags = TagIndex()
        self.values = ValueQueue()
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
        raw = env.raw
        size = len(raw)
        if size > self.max_bytes or self.max_count < 1:
            return False
        tag = env.tag
        admitted = self.values.admit(env, now, used=self._bytes, count=len(self._bodies),
                                     max_bytes=self.max_bytes, max_count=self.max_count)
        if admitted is None:
            return False  # worth less than what it would push out
        new, victims = admitted
        for v in victims:
            self._drop(v[5], v[3], v[6])
        self._bodies[eid] = raw
        self.index.add(shard_of_tag(tag), env.expiry, eid)
        self.tags.add(tag, eid)
        self.values.add(new)
        self._bytes += size
        return True

    def get(self, envelope_id: bytes) -> bytes | None:
        return self._bodies.get(envelope_id)

    def purge(self, now: int) -> int:
        expired = self.index.pop_expired(now)
        for key in expired:
            eid = key_id(key)
            raw = self._bodies.pop(eid, None)
            self.tags.remove(eid)
            self.values.remove(eid)
            if raw is not None:
                self._bytes -= len(raw)
        return len(expired)

    def iter_raw(self) -> Iterator[bytes]:
        for key in sorted_by_expiry(self.index.iter_keys()):
            raw = self._bodies.get(key_id(key))
            if raw is not None:
                yield raw

    def close(self) -> None:
        self._bodies.clear()
        self.index = SortedIndex()
        self.tags.clear()
        self.values.clear()
        self._bytes = 0

    def _drop(self, eid: bytes, expiry: int, tag: bytes) -> None:
        raw = self._bodies.pop(eid, None)
        self.index.remove(shard_of_tag(tag), expiry, eid)
        self.tags.remove(eid)
        self.values.remove(eid)
        if raw is not None:
            self._bytes -= len(raw)
