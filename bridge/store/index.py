"""The sorted (shard, expiry, id) index every store keeps, the tag index, and the store
interface.

The index is a Python list of 42-byte keys ``shard key ‖ expiry ‖ id`` in sorted
order, so every shard prefix is one contiguous range (docs/sharding.md), plus
prefix sums of the ids (as little-endian integers) for reconciliation's additive
fingerprints, rebuilt lazily from the first insertion or removal onwards, only up to
the highest index a fingerprint asks for. Expiry is not the first field, so a heap
of ``expiry ‖ key`` (lazily pruned) finds what has expired without a pass.

``TagIndex`` maps each recipient tag to the ids stored under it, so a light
peer's WATCH costs one lookup per tag, not a pass over the store.

What a full store gives up is ``bridge.store.values.ValueQueue``'s to decide.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from heapq import heapify, heappop, heappush
from itertools import accumulate
from typing import Protocol

from bridge.core.envelope import Envelope
from bridge.core.reconcile import ID_OFFSET, fingerprint_of, make_key

_EXP = slice(2, ID_OFFSET)  # a key's expiry bytes


def key_id(key: bytes) -> bytes:
    return key[ID_OFFSET:]


def _by_expiry(key: bytes) -> bytes:
    return key[_EXP] + key


class SortedIndex:
    """Sorted keys with lazily maintained prefix sums; implements ``RangeSource``."""

    __slots__ = ("_expiring", "_keys", "_sums")

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        self._keys: list[bytes] = sorted(keys)
        # _sums[i] = sum of the first i ids (plus a constant); valid for len(_sums)-1 keys.
        self._sums: list[int] = [0]
        # expiry ‖ key of every key, and of some removed since (dropped when they surface)
        self._expiring: list[bytes] = [_by_expiry(k) for k in self._keys]
        heapify(self._expiring)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        i = bisect_left(self._keys, key)
        return i < len(self._keys) and self._keys[i] == key

    def add(self, shard: int, expiry: int, item_id: bytes) -> None:
        key = make_key(shard, expiry, item_id)
        keys = self._keys
        if keys and key > keys[-1]:
            keys.append(key)
        else:
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                return
            keys.insert(i, key)
            if len(self._sums) > i + 1:
                del self._sums[i + 1 :]
        heappush(self._expiring, _by_expiry(key))

    def remove(self, shard: int, expiry: int, item_id: bytes) -> None:
        self._remove(make_key(shard, expiry, item_id))

    def _remove(self, key: bytes, *, tidy: bool = True) -> bool:
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            del self._keys[i]
            if i == 0:
                del self._sums[:1]
                if not self._sums:
                    self._sums.append(0)
            elif len(self._sums) > i + 1:
                del self._sums[i + 1 :]
            if tidy:
                self._tidy()
            return True
        return False

    def _tidy(self) -> None:
        if len(self._expiring) > 2 * len(self._keys) + 64:  # mostly removed ones: rebuild
            self._expiring = [_by_expiry(k) for k in self._keys]
            heapify(self._expiring)

    def pop_expired(self, now: int) -> list[bytes]:
        """Remove and return the keys that expire at or before ``now``, earliest first."""
        out: list[bytes] = []
        heap, limit = self._expiring, (now + 1).to_bytes(8, "big")
        while heap and heap[0] < limit:
            key = heappop(heap)[8:]
            if self._remove(key, tidy=False):
                out.append(key)
        self._tidy()
        return out

    def iter_keys(self) -> Iterator[bytes]:
        return iter(self._keys)

    def drop_sums(self) -> None:
        """Forget the prefix sums (about 70 bytes an item) until reconciliation needs them."""
        self._sums = [0]

    # --- RangeSource -------------------------------------------------------------

    def lower_bound(self, key: bytes) -> int:
        return bisect_left(self._keys, key)

    def key_at(self, i: int) -> bytes:
        return self._keys[i]

    def ids(self, lo: int, hi: int) -> list[bytes]:
        return [k[ID_OFFSET:] for k in self._keys[lo:hi]]

    def fingerprint(self, lo: int, hi: int) -> bytes:
        sums = self._sums
        if len(sums) <= hi:
            start = len(sums) - 1
            frm = int.from_bytes
            acc = accumulate((frm(k[ID_OFFSET:], "little") for k in self._keys[start:]),
                             initial=sums[-1])
            next(acc)  # the initial value is already the last sum
            sums.extend(acc)
        return fingerprint_of(sums[hi] - sums[lo], hi - lo)


TAG_OFFSET = 2  # the recipient tag's place in an envelope's header (envelope.md)
TAG_SIZE = 16


def sorted_by_expiry(keys: Iterable[bytes]) -> list[bytes]:
    """Index keys, earliest expiry first (then by id)."""
    return sorted(keys, key=lambda k: k[2:])


class TagIndex:
    """Recipient tag -> ids stored under it, kept as envelopes come and go."""

    __slots__ = ("_ids", "_tag")

    def __init__(self) -> None:
        self._ids: dict[bytes, set[bytes]] = {}
        self._tag: dict[bytes, bytes] = {}  # id -> its tag, to remove by id alone

    def __len__(self) -> int:
        return len(self._tag)

    def add(self, tag: bytes, item_id: bytes) -> None:
        if item_id in self._tag:
            return
        self._tag[item_id] = tag
        self._ids.setdefault(tag, set()).add(item_id)

    def remove(self, item_id: bytes) -> None:
        tag = self._tag.pop(item_id, None)
        if tag is None:
            return
        ids = self._ids[tag]
        ids.discard(item_id)
        if not ids:
            del self._ids[tag]

    def ids(self, tags: Iterable[bytes]) -> list[bytes]:
        """The ids stored under any of ``tags`` (in no particular order)."""
        out: list[bytes] = []
        for t in tags:
            out.extend(self._ids.get(t, ()))
        return out

    def clear(self) -> None:
        self._ids.clear()
        self._tag.clear()


class Store(Protocol):
    """What the node needs from a store (memory or SQLite)."""

    index: SortedIndex
    tags: TagIndex
    max_bytes: int
    max_count: int

    def __len__(self) -> int: ...
    def __contains__(self, envelope_id: object) -> bool: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def pending(self) -> int:
        """Writes accepted but not yet durable (always 0 for the RAM store)."""
        ...

    def add(self, env: Envelope, now: int) -> bool:
        """Store; False if already present or worth less than what it would evict
        (``ValueQueue``). May evict the cheapest envelopes.

        The envelope is in the store's view at once; it is durable (and may be
        acknowledged) once ``pending`` is 0 or ``flush()`` has returned.
        """
        ...

    async def flush(self) -> None:
        """Return once every write accepted before the call is durable."""
        ...

    def get(self, envelope_id: bytes) -> bytes | None: ...
    def purge(self, now: int) -> int:
        """Drop expired envelopes; how many were dropped."""
        ...

    def iter_raw(self) -> Iterator[bytes]:
        """Every stored envelope, earliest expiry first."""
        ...

    def close(self) -> None: ...
