"""The node's one memory budget, applied to the parts that peers can make grow.

``NodeConfig.memory_budget`` (bytes) is split by ``bridge.core.budget.MemoryBudget``:
the store is clamped to its share (RAM store: its bytes, and its bytes plus the
fixed cost of each envelope in RAM, about 1.1 KiB, which bounds a store of small
envelopes; SQLite store: the number of envelopes indexed in RAM), every link's
outbound queue and all of them together are capped in bytes
(``bridge.net.peerlink``), requests in flight are capped per link and node-wide
(``bridge.net.relay``), and each link remembers at most its share of peer-held
ids. ``usage`` reports what is counted, for ``Node.health``;
``give_back`` returns freed heap pages to the system once a maintenance round, so
the churn of an attack (thousands of short links) does not stay in the RSS.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
from typing import TYPE_CHECKING

from bridge.core import gossip as g
from bridge.core.budget import STORE_ITEM_BYTES, MemoryBudget
from bridge.net.peerlink import OutboundBudget
from bridge.store.index import Store
from bridge.store.values import ValueQueue

if TYPE_CHECKING:
    from bridge.net.node import Node, NodeConfig


def apply_budget(cfg: NodeConfig, store: Store) -> tuple[MemoryBudget, g.Budgets, OutboundBudget]:
    """Clamp ``store`` to its share; the per-link budgets and the shared queue budget."""
    mem = MemoryBudget(cfg.memory_budget, cfg.max_peers)
    if getattr(store, "kind", "memory") == "memory":
        store.max_bytes = min(store.max_bytes, mem.store_bytes)
        values = getattr(store, "values", None)  # the eviction order counts each envelope
        if isinstance(values, ValueQueue):
            values.item_bytes, values.ram_limit = STORE_ITEM_BYTES, mem.store_ram
        else:  # a store without one: its count alone bounds what its envelopes cost
            store.max_count = min(store.max_count, mem.store_ram // STORE_ITEM_BYTES)
    else:
        store.max_count = min(store.max_count, mem.store_count)
    b = cfg.budgets
    link = dataclasses.replace(
        b,
        max_wanted=min(b.max_wanted, mem.link_request_ids),
        peer_has_ids=min(b.peer_has_ids, mem.peer_has_ids),
    )
    return mem, link, OutboundBudget(mem.queue_bytes)


def usage(node: Node) -> dict[str, int]:
    """What the budget counts, now: bytes queued, requests in flight, store bytes."""
    conns = node.conns
    return {
        "budget": node.memory.total,
        "queued_bytes": node.outbound.queued,
        "requests": len(node.relay.pending),
        "link_requests": sum(len(c.link.wanted) for c in conns),
        "store_bytes": node.store.total_bytes,
        "store_limit": node.store.max_bytes,
        "links_dropped": node.outbound.dropped,
        "throttled": sum(c.link.throttled for c in conns),
    }


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(name).malloc_trim  # glibc only
    return None


_TRIM = _malloc_trim()


def give_back() -> None:
    """Hand freed heap memory back to the system (glibc; elsewhere nothing)."""
    if _TRIM is not None:
        _TRIM(0)
