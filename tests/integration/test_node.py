"""Loopback tests of the node: real sockets, real WebSocket links."""

from __future__ import annotations

import time

import pytest

from bridge.core.errors import WeakProofOfWorkError
from tests.gossip_support import (
    has_all,
    linked,
    make_envelope,
    start_nodes,
    stop_all,
    wait_all,
)


async def test_two_nodes_exchange_an_envelope_once():
    a, b = await start_nodes(2)
    try:
        a.add_peer(f"127.0.0.1:{b.port}")
        await wait_all([a, b], linked(1), 5)
        got = []
        b.subscribe(got.append)
        env = make_envelope(int(time.time()), bucket=1024)
        await a.publish(env.raw)
        await wait_all([b], has_all({env.id}), 5)
        assert [e.id for e in got] == [env.id]
        # the body crossed the link once: b received about one envelope's worth
        (conn,) = b.active_conns()
        assert len(env.raw) <= conn.link.bytes_in < len(env.raw) + 400
    finally:
        await stop_all([a, b])


async def test_publish_runs_the_checks():
    (a,) = await start_nodes(1)
    try:
        weak = make_envelope(int(time.time()), weak=True)
        with pytest.raises(WeakProofOfWorkError):
            await a.publish(weak.raw)
        assert len(a.store) == 0
    finally:
        await stop_all([a])
