"""A node on SQLite acknowledges an envelope only once it is durable: ``publish``
returns, subscribers hear of it, peers get a HAVE or its body only after the
group commit that holds it. Real nodes on loopback, a real SQLite file; the
commit thread is held at a gate to look inside the window."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from bridge.net.node import Node
from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import fast_config, has_all, linked, make_envelope, stop_all, wait_all


class GatedStore(SQLiteStore):
    """Commits wait at a gate (on the commit thread) until the test opens it."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.writing = threading.Event()

    def _write(self, ops):  # type: ignore[no-untyped-def]
        self.writing.set()
        assert self.gate.wait(10)
        super()._write(ops)


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


async def test_nothing_is_announced_served_or_handed_on_before_it_is_durable(tmp_path):
    store = GatedStore(str(tmp_path / "a.db"))
    a = Node(fast_config(anti_entropy_interval=30), store=store)
    b = Node(fast_config(anti_entropy_interval=30))
    await a.start()
    await b.start()
    try:
        b.add_peer(f"127.0.0.1:{a.port}")
        await wait_all([a, b], linked(1), 5)
        heard: list[bytes] = []
        a.subscribe(lambda e: heard.append(e.id))
        env = make_envelope(int(time.time()))
        publishing = asyncio.create_task(a.publish(env.raw))
        await until(store.writing.is_set)  # stored in the view, its commit held at the gate
        (to_b,) = a.active_conns()
        assert env.id in a.store and store.pending
        assert not to_b.pending_announce and env.id not in to_b.link.peer_has
        assert not heard and not publishing.done()

        # b reconciles with a and asks for it: a keeps the want, serves nothing yet
        (to_a,) = b.active_conns()
        to_a.send(to_a.link.start_reconcile())
        await until(lambda: env.id in to_b.link.peer_wants)
        assert env.id not in b.store

        store.gate.set()
        await publishing
        assert heard == [env.id] and store.pending == 0
        await wait_all([b], has_all({env.id}), 5)  # served now, once
        assert env.id not in to_b.link.peer_wants
    finally:
        store.gate.set()
        await stop_all([a, b])
        store.close()


async def test_envelopes_from_a_peer_are_committed_in_groups(tmp_path):
    store = SQLiteStore(str(tmp_path / "b.db"))
    a = Node(fast_config(), store=store)
    b = Node(fast_config())
    await a.start()
    await b.start()
    try:
        b.add_peer(f"127.0.0.1:{a.port}")
        await wait_all([a, b], linked(1), 5)
        heard: list[bytes] = []
        a.subscribe(lambda e: heard.append(e.id))
        now = int(time.time())
        envs = [make_envelope(now) for _ in range(300)]
        await asyncio.gather(*(b.publish(e.raw) for e in envs))
        await a.wait_for(lambda: len(heard) == len(envs), 10)  # each handed on once durable
        assert store.pending == 0 and store.commits < len(envs) // 3
    finally:
        await stop_all([a, b])
        store.close()
    reopened = SQLiteStore(str(tmp_path / "b.db"))
    assert all(e.id in reopened for e in envs)
    reopened.close()
