"""Two nodes say BYE at once: each BYE arrives on a link its receiver has already closed.
That is no violation and no error — no ban, no traceback, nothing in recent errors."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.core.gossip_wire import ByeReason
from bridge.net.node import Node
from tests.gossip_support import fast_config, stop_all


async def test_crossing_byes_are_neither_errors_nor_bans(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING)
    for _ in range(5):  # the BYEs cross in either order; a few rounds meet both
        await _crossing_byes(Node(fast_config()), Node(fast_config()))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def _crossing_byes(a: Node, b: Node) -> None:
    await a.start()
    await b.start()
    try:
        a.add_peer(f"127.0.0.1:{b.port}")
        await a.wait_for(lambda: bool(a.active_conns()), 5)
        await b.wait_for(lambda: bool(b.active_conns()), 5)
        a.dialer.forget(f"127.0.0.1:{b.port}")  # no redial once the link is gone
        ca, cb = a.active_conns()[0], b.active_conns()[0]
        ca.send(ca.link.bye(ByeReason.NORMAL, "leaving"))
        cb.send(cb.link.bye(ByeReason.NORMAL, "leaving too"))
        await asyncio.wait_for(asyncio.gather(ca.closed.wait(), cb.closed.wait()), 5)
        await a.wait_for(lambda: not a.conns, 5)
        await b.wait_for(lambda: not b.conns, 5)
        assert not a.bans and not b.bans
        assert not a.recent_errors and not b.recent_errors
    finally:
        await stop_all([a, b])
