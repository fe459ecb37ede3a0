"""The direct-delivery inbox cannot be filled for good.

The daemon's own direct-delivery part (``bridge.direct.DirectInbox``) on a real
node, reached over real loopback HTTP by the real kkv client. An envelope can pass
the endpoint's check and then be refused by the node: it expired in between (the
endpoint checks at one second, the node at a later one). Here the endpoint's clock
runs 30 s behind the node's, so every such envelope is one that "expired between
the check and the hand-off": the endpoint accepts it, the node refuses it. More
of them than the inbox has slots arrive, and an honest envelope after them still
gets in. And an inbox nobody takes from lets an envelope go once it expires.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.config import Config
from bridge.core import kkv_records
from bridge.core.envelope import envelope_id
from bridge.direct import DirectInbox
from bridge.net.kkv import KkvInbox, KkvServer, KkvSettings
from bridge.net.kkv_client import DirectDeliveryError, deliver_direct
from bridge.net.node import Node, NodeConfig
from bridge.store.memory import MemoryStore
from tests.envelopes import make_envelope

BITS = 8
LAG = 30  # the endpoint's clock runs this many seconds behind the node's


def lagging() -> float:
    return time.time() - LAG


@pytest.fixture
async def node_with_inbox() -> AsyncIterator[tuple[Node, DirectInbox]]:
    node = Node(NodeConfig(host="127.0.0.1", port=0, base_bits=BITS), store=MemoryStore())
    inbox = DirectInbox(Config(p2p_listen="127.0.0.1", difficulty=BITS), node)
    inbox.kkv.clock = lagging
    await node.start()
    try:
        yield node, inbox
    finally:
        await node.stop()


async def test_refused_envelopes_leave_the_inbox(
        node_with_inbox: tuple[Node, DirectInbox]) -> None:
    node, inbox = node_with_inbox
    slots = inbox.kkv.inbox.max_messages
    assert slots == kkv_records.DEFAULT_MAX_MESSAGES
    url = f"http://127.0.0.1:{node.port}"
    async with aiohttp.ClientSession() as session:
        for i in range(slots + 5):
            # valid for 25 s by the endpoint's clock, expired 5 s ago by the node's
            raw = make_envelope(now=int(lagging()), ttl=LAG - 5, base_bits=BITS, text=str(i))
            await deliver_direct(session, url, raw, clock=lagging)
            assert len(inbox.kkv.inbox) == 0, f"envelope {i} stayed in the inbox"
        assert inbox.refused == slots + 5 and inbox.received == 0
        assert envelope_id(raw) not in node.store

        honest = make_envelope(now=int(lagging()), ttl=LAG + 3600, base_bits=BITS)
        await deliver_direct(session, url, honest, clock=lagging)
    assert inbox.received == 1 and envelope_id(honest) in node.store
    assert len(inbox.kkv.inbox) == 0


async def test_an_untaken_envelope_leaves_when_it_expires() -> None:
    """Nobody subscribed (only the local read endpoints would take it): expiry frees it."""
    from aiohttp import web

    now = [float(int(time.time()))]
    server = KkvServer(KkvInbox(max_messages=2), KkvSettings(max_messages=2,
                                                              envelope_base_bits=BITS),
                       clock=lambda: now[0])
    app = web.Application()
    app.add_routes(server.routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            for ttl in (60, 120):
                raw = make_envelope(now=int(now[0]), ttl=ttl, base_bits=BITS)
                await deliver_direct(session, url, raw, clock=lambda: now[0])
            assert server.inbox.full
            late = make_envelope(now=int(now[0]), ttl=3600, base_bits=BITS)
            with pytest.raises(DirectDeliveryError, match="full"):
                await deliver_direct(session, url, late, clock=lambda: now[0])
            now[0] += 61  # the first has expired: its slot is free again
            await deliver_direct(session, url, late, clock=lambda: now[0])
            assert len(server.inbox) == 2
            assert envelope_id(late) in {m.id for m in server.inbox.messages}
    finally:
        await runner.cleanup()
