"""The memory budget counts what each stored envelope costs in RAM beyond its bytes:
a RAM store filled with the smallest envelopes, each under a tag of its own (the
most each one costs), stays within its share of the budget as tracemalloc measures it."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

from bridge.core.budget import STORE_ITEM_BYTES, MemoryBudget
from bridge.net.memory import apply_budget
from bridge.net.node import NodeConfig
from bridge.store.memory import MemoryStore
from bridge.store.values import ValueQueue
from tests.gossip_support import make_envelope

MiB = 1024 * 1024


def test_a_ram_limit_counts_each_envelope() -> None:
    q = ValueQueue()
    q.item_bytes, q.ram_limit = 100, 1000
    now = 1000
    e = [q.entry(bytes([i]) * 32, bytes([i]) * 16, 150, now + 3600, 20, now) for i in range(5)]
    for x in e[:4]:  # 4 × (150 + 100) = 1000: full
        assert q.plan(x, used=150 * len(q), count=len(q), max_bytes=10**6, max_count=10**6,
                      now=now) == []
        q.add(x)
    victims = q.plan(e[4], used=600, count=4, max_bytes=10**6, max_count=10**6, now=now)
    assert victims is not None and len(victims) == 1  # one goes, though its bytes would fit


def test_a_budgeted_ram_store_of_small_envelopes_stays_within_its_share() -> None:
    budget = 32 * MiB
    mem = MemoryBudget(budget, 64)
    store = MemoryStore()
    apply_budget(NodeConfig(memory_budget=budget), store)
    fits = mem.store_ram // (338 + STORE_ITEM_BYTES)  # the smallest envelope: 338 bytes
    now = int(time.time())
    envs = [make_envelope(now, base_bits=1, tag=os.urandom(16)) for _ in range(fits + 500)]
    raws = sum(len(e.raw) for e in envs)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for e in envs:
            store.add(e, now)
        store.index.fingerprint(0, len(store.index))  # reconciliation's prefix sums too
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(store) == fits  # the RAM limit, and nothing else, held the rest back
    # what the store allocated, plus the raw bytes it keeps (made before tracing began)
    assert used + store.total_bytes <= mem.store_ram, (used + store.total_bytes, mem.store_ram)
    assert store.max_bytes >= raws  # the byte cap alone would have let every one in
