"""What a full store gives up: ``ValueQueue``.

The envelope whose proof of work buys the least per byte per second of its
remaining life goes first, priced as the difficulty policy prices it
(``pow.price_bits``), so a newcomer worth less than the cheapest stored envelope
is refused; and no recipient tag may hold more than a share of the store. Both
orders are heaps, so an insert costs O(log n).
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from math import floor, log2

from bridge.core import pow
from bridge.core.envelope import MAX_ENVELOPE_SIZE, Envelope

TAG_SHARE = 16  # no recipient tag may hold more than 1/16 of a store's bytes
MAX_REKEYS = 16  # stale keys brought up to date per decision, beyond which the heap's order stands

VALUE_STEPS = 64  # densities are kept in 1/64 bits: a key changes at most ~1,300 times a week

# An envelope's value: (bits of work above its price, -life class, density in 1/64 bits).
Value = tuple[int, int, int]
# An entry, flat to keep it small: (*value, expiry, seq, id, tag, size, work bits). The
# first five order the heaps, cheapest first (at equal value, the earlier expiry, then
# the older arrival); seq makes every key unique.
Entry = tuple[int, int, int, int, int, bytes, bytes, int, int]
KEY = 5


def value_of(work_bits: int, size: int, expiry: int, now: int) -> Value:
    """What an envelope's work buys per byte per second of its remaining life, at ``now``;
    the smaller goes first.

    1. Bits of work above the price of keeping ``size`` bytes for the rest of its
       life (``pow.price_bits``: KiB × hours, × ⌈ttl / 2 days⌉ past two days):
       work per byte-second in the price's units. Work is 2^(the proof's leading
       zero bits), what it shows, not what was required.
    2. At equal bits, the longer life class (⌈ttl / 2 days⌉) goes first: an
       envelope that lives a week holds its bytes longest for the same price.
    3. Then work per byte per second counted exactly (log2, in 1/64 bits): a
       small message that paid for a whole KiB outranks a large one that paid
       the same price per KiB.

    The price is compared first, not the exact density, because the price rounds
    up to powers of two: counted exactly, a week-long envelope at the minimum
    may show up to twice the density of a two-day message at the minimum, which
    would let the cheapest week-long spam hold every store. Each part only grows
    as the life left shrinks, so a stored key is a lower bound of its value now.
    """
    ttl = max(1, expiry - now)
    cls = -(-ttl // pow.LONG_LIFE)
    density = floor((work_bits - log2(size * ttl * cls)) * VALUE_STEPS)
    return work_bits - pow.price_bits(size, ttl), -cls, density


class ValueQueue:
    """The order in which a full store evicts, overall and within each recipient tag.

    Two heaps of the same entries (one over the store, one per tag) with lazy
    deletion: an entry is current while ``_live`` maps its id to it. Stale keys
    (the value grows as time passes) are brought up to date when they reach the
    top, at most ``MAX_REKEYS`` per decision, so a decision is O(k log n) for k
    evictions and never a pass over the store.
    """

    __slots__ = (
        "_dirty", "_heap", "_live", "_seq", "_tag_bytes", "_tag_count", "_tag_heaps",
        "item_bytes", "min_tag_bytes", "ram_limit", "tag_share",
    )

    def __init__(self, tag_share: int = TAG_SHARE, min_tag_bytes: int = MAX_ENVELOPE_SIZE) -> None:
        self.tag_share = tag_share
        self.min_tag_bytes = min_tag_bytes
        self._heap: list[Entry] = []
        self._live: dict[bytes, Entry] = {}
        self._tag_heaps: dict[bytes, list[Entry]] = {}
        self._tag_bytes: dict[bytes, int] = {}
        self._tag_count: dict[bytes, int] = {}
        self._dirty: set[bytes] = set()  # tags whose heaps gained stale entries in a decision
        self._seq = 0
        # A memory budget (``bridge.net.memory``): the stored bytes plus ``item_bytes``
        # for each envelope stay under ``ram_limit`` (0: no such limit).
        self.item_bytes = 0
        self.ram_limit = 0

    def __len__(self) -> int:
        return len(self._live)

    def tag_quota(self, max_bytes: int) -> int:
        """Bytes one tag may hold: a share of the store, and always one envelope of any size."""
        return max(max_bytes // self.tag_share, self.min_tag_bytes)

    def tag_bytes(self, tag: bytes) -> int:
        return self._tag_bytes.get(tag, 0)

    def entry(
        self, item_id: bytes, tag: bytes, size: int, expiry: int, work_bits: int, now: int
    ) -> Entry:
        self._seq += 1
        return (*value_of(work_bits, size, expiry, now), expiry, self._seq, item_id, tag, size,
                work_bits)

    def admit(
        self, env: Envelope, now: int, *, used: int, count: int, max_bytes: int, max_count: int
    ) -> tuple[Entry, list[Entry]] | None:
        """``env``'s entry and what to evict for it (``plan``), or None: refuse it."""
        work = pow.work_bits(env.pow_digest, env.nonce)
        new = self.entry(env.id, env.tag, len(env.raw), env.expiry, work, now)
        victims = self.plan(new, used=used, count=count, max_bytes=max_bytes,
                            max_count=max_count, now=now)
        return None if victims is None else (new, victims)

    def plan(
        self, new: Entry, *, used: int, count: int, max_bytes: int, max_count: int, now: int
    ) -> list[Entry] | None:
        """The entries to evict so that ``new`` fits, cheapest first; None: refuse ``new``.

        Nothing changes when it refuses (beyond keys brought up to date); the
        caller removes the victims it is given, then adds ``new``.
        """
        size, tag = new[7], new[6]
        popped: list[tuple[list[Entry], Entry]] = []
        victims: dict[bytes, Entry] = {}
        # Within its tag first: a flood to one recipient competes only with itself.
        tag_used = self._tag_bytes.get(tag, 0)
        quota = self.tag_quota(max_bytes)
        while tag_used + size > quota:
            e = self._cheapest(self._tag_heaps.get(tag), now, popped, victims)
            if e is None or e[:KEY] >= new[:KEY]:
                self._undo(popped)
                self._tidy()
                return None
            victims[e[5]] = e
            tag_used -= e[7]
            used -= e[7]
            count -= 1
        ram, item = self.ram_limit, self.item_bytes
        while (count >= max_count or used + size > max_bytes
               or (ram and used + size + (count + 1) * item > ram)):
            e = self._cheapest(self._heap, now, popped, victims)
            if e is None or e[:KEY] >= new[:KEY]:
                self._undo(popped)
                self._tidy()
                return None
            victims[e[5]] = e
            used -= e[7]
            count -= 1
        self._tidy()
        return list(victims.values())

    def add(self, e: Entry) -> None:
        item_id, tag, size = e[5], e[6], e[7]
        if item_id in self._live:
            return
        self._live[item_id] = e
        heappush(self._heap, e)
        heappush(self._tag_heaps.setdefault(tag, []), e)
        self._tag_bytes[tag] = self._tag_bytes.get(tag, 0) + size
        self._tag_count[tag] = self._tag_count.get(tag, 0) + 1

    def remove(self, item_id: bytes) -> Entry | None:
        e = self._live.pop(item_id, None)
        if e is None:
            return None
        tag = e[6]
        left = self._tag_count[tag] - 1
        if left:
            self._tag_count[tag] = left
            self._tag_bytes[tag] -= e[7]
            theap = self._tag_heaps[tag]
            if len(theap) > 2 * left + 8:
                self._tag_heaps[tag] = self._current(theap)
        else:
            del self._tag_count[tag], self._tag_bytes[tag], self._tag_heaps[tag]
        self._tidy()
        return e

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()
        self._tag_heaps.clear()
        self._tag_bytes.clear()
        self._tag_count.clear()
        self._dirty.clear()

    def _tidy(self) -> None:
        """Drop stale entries once they outnumber the live ones (never within a decision:
        it holds references to the heaps)."""
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = self._current(self._heap)
        for tag in self._dirty:
            theap = self._tag_heaps.get(tag)
            if theap is not None and len(theap) > 2 * self._tag_count[tag] + 8:
                self._tag_heaps[tag] = self._current(theap)
        self._dirty.clear()

    def _push_tag(self, tag: bytes, e: Entry) -> None:
        heappush(self._tag_heaps[tag], e)
        self._dirty.add(tag)

    def _current(self, heap: list[Entry]) -> list[Entry]:
        """``heap`` without its stale entries (amortised: runs once per as many removals)."""
        live = self._live
        out = [e for e in heap if live.get(e[5]) is e]
        heapify(out)
        return out

    def _cheapest(
        self,
        heap: list[Entry] | None,
        now: int,
        popped: list[tuple[list[Entry], Entry]],
        skip: dict[bytes, Entry],
    ) -> Entry | None:
        """Pop the current cheapest of ``heap`` not in ``skip`` (recorded in ``popped``)."""
        rekeys = 0
        live = self._live
        while heap:
            e = heap[0]
            item_id = e[5]
            if live.get(item_id) is not e:
                heappop(heap)  # stale: removed, or re-keyed into a newer entry
                continue
            heappop(heap)
            if item_id in skip:
                popped.append((heap, e))
                continue
            value = value_of(e[8], e[7], e[3], now)
            if value != e[:3]:
                e = (*value, *e[3:])
                live[item_id] = e
                if heap is self._heap:
                    self._push_tag(e[6], e)
                else:
                    heappush(self._heap, e)
                # Every other key is a lower bound of its value: if ours now exceeds
                # the next one's, that one may be cheaper; look again.
                if rekeys < MAX_REKEYS and heap and e[:KEY] > heap[0][:KEY]:
                    heappush(heap, e)
                    rekeys += 1
                    continue
            popped.append((heap, e))
            return e
        return None

    @staticmethod
    def _undo(popped: list[tuple[list[Entry], Entry]]) -> None:
        for heap, e in popped:
            heappush(heap, e)
