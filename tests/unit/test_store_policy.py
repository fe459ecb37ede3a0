"""The store's eviction order (``ValueQueue``) against a brute-force model of the rule.

Rule: a newcomer first makes room within its recipient tag's share, then in the
store, each time taking the stored envelope of least value (``value_of``; then
earlier expiry, then older arrival); if the next one to go is worth as much as
the newcomer or more, the newcomer is refused and nothing changes.
"""

from __future__ import annotations

import os
import random

import pytest

from bridge.core import pow
from bridge.core.envelope import Envelope
from bridge.store.memory import MemoryStore
from bridge.store.sqlite import SQLiteStore
from bridge.store.values import ValueQueue, value_of
from tests.store_support import priced

NOW = 1_800_000_000
TAGS = [os.urandom(16) for _ in range(3)]
MIN_TAG = 2_000  # a small floor, so that the tag shares bind in stores this small
_rnd = random.Random(7)
POOL: list[Envelope] = [
    priced(NOW, ttl=_rnd.choice([600, 7200, 86400, 2 * 86400, 5 * 86400, 7 * 86400]),
           extra=_rnd.randrange(3), tag=_rnd.choice(TAGS), bucket=_rnd.choice([256, 1024, 4096]))
    for _ in range(48)
]


class Model:
    """The rule written out plainly: sorts everything on every add."""

    def __init__(self, max_bytes: int, max_count: int) -> None:
        self.max_bytes, self.max_count = max_bytes, max_count
        self.held: dict[bytes, tuple[Envelope, int]] = {}
        self.seq = 0

    def key(self, env: Envelope, seq: int, now: int) -> tuple[object, ...]:
        work = pow.work_bits(env.pow_digest, env.nonce)
        return (value_of(work, len(env.raw), env.expiry, now), env.expiry, seq)

    def add(self, env: Envelope, now: int) -> bool:
        if env.id in self.held or env.expiry <= now or len(env.raw) > self.max_bytes:
            return False
        self.seq += 1
        new = self.key(env, self.seq, now)
        quota = ValueQueue(min_tag_bytes=MIN_TAG).tag_quota(self.max_bytes)
        order = sorted(self.held.values(), key=lambda es: self.key(es[0], es[1], now))
        gone: set[bytes] = set()
        tag_used = sum(len(e.raw) for e, _ in self.held.values() if e.tag == env.tag)
        for e, seq in (es for es in order if es[0].tag == env.tag):
            if tag_used + len(env.raw) <= quota:
                break
            if self.key(e, seq, now) >= new:
                return False
            gone.add(e.id)
            tag_used -= len(e.raw)
        if tag_used + len(env.raw) > quota:
            return False
        used = sum(len(e.raw) for e, _ in self.held.values() if e.id not in gone)
        count = len(self.held) - len(gone)
        for e, seq in (es for es in order if es[0].id not in gone):
            if count < self.max_count and used + len(env.raw) <= self.max_bytes:
                break
            if self.key(e, seq, now) >= new:
                return False
            gone.add(e.id)
            used -= len(e.raw)
            count -= 1
        if count >= self.max_count or used + len(env.raw) > self.max_bytes:
            return False
        for i in gone:
            del self.held[i]
        self.held[env.id] = (env, self.seq)
        return True


def test_the_store_decides_as_the_model() -> None:
    """Random runs (fixed seeds) through the store and the model: the same decision every
    time, and every bound — the count, the bytes, a tag's share — binding in some."""
    bound = [False, False, False]
    for seed in range(150):
        rnd = random.Random(seed)
        max_bytes, max_count, step = rnd.randrange(4_000, 80_000), rnd.randrange(1, 30), \
            rnd.randrange(4)
        store = MemoryStore(max_bytes=max_bytes, max_count=max_count)
        store.values.min_tag_bytes = MIN_TAG
        model = Model(max_bytes, max_count)
        quota = store.values.tag_quota(max_bytes)
        now = NOW
        for _ in range(rnd.randrange(1, 120)):
            now += step  # slowly enough that no more than MAX_REKEYS keys go stale at once
            env = rnd.choice(POOL)
            assert store.add(env, now) == model.add(env, now), seed
            assert set(model.held) == {k[10:] for k in store.index.iter_keys()}
            assert store.total_bytes == sum(len(e.raw) for e, _ in model.held.values())
            assert store.total_bytes <= max_bytes
            assert all(store.values.tag_bytes(t) <= quota for t in TAGS)
            bound[0] |= len(store) == max_count
            bound[1] |= store.total_bytes + 4200 > max_bytes
            bound[2] |= store.total_bytes + 4200 <= max_bytes and any(
                store.values.tag_bytes(t) + 4200 > quota for t in TAGS)
    assert all(bound)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_heaps_stay_small_when_every_newcomer_is_refused(kind: str, tmp_path) -> None:
    """Refusals bring stale keys up to date; the stale copies do not pile up."""
    cheap = priced(NOW, ttl=7 * 86400)
    store = (MemoryStore(max_count=8) if kind == "memory"
             else SQLiteStore(str(tmp_path / "h.db"), max_count=8))
    for _ in range(8):
        assert store.add(priced(NOW, ttl=3600, extra=2), NOW)
    for t in range(0, 3000, 3):
        assert not store.add(cheap, NOW + t)
    assert len(store.values._heap) <= 2 * len(store) + 64
    assert sum(len(h) for h in store.values._tag_heaps.values()) <= 3 * len(store) + 8 * 8
    store.close()
