"""A peer that announces an envelope and never serves it holds the envelope up only
until the request times out: then it is asked of another peer that announced it
(bridge/net/relay.py ``expire_requests``). Real node, raw peers on real sockets."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from bridge.core.gossip_wire import Have, Want, encode, parse
from bridge.net import relay
from tests.adversarial.gossip_attacker import Stats, hand_over, open_link
from tests.gossip_support import make_envelope, start_nodes, stop_all


async def test_an_envelope_a_dropper_announced_comes_from_the_next_announcer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "REQUEST_TIMEOUT", 0.5)
    (victim,) = await start_nodes(1)
    env = make_envelope(int(time.time()))
    addr = f"127.0.0.1:{victim.port}"
    stats = Stats()
    try:
        async with aiohttp.ClientSession() as session:
            dropper = await open_link(session, addr, light=False, stats=stats)
            honest = await open_link(session, addr, light=False, stats=stats)
            assert dropper is not None and honest is not None
            await dropper.send_bytes(encode(Have((env.id,))))

            async def asked_of_the_dropper() -> None:
                async for msg in dropper:  # the victim asks the first announcer ...
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        m = parse(msg.data)
                        if isinstance(m, Want) and env.id in m.ids:
                            return  # ... which never answers

            await asyncio.wait_for(asked_of_the_dropper(), 10)
            # The honest peer announces it too and serves it when asked. Neither raw
            # peer answers a reconciliation, so only a second request can bring it.
            await asyncio.wait_for(hand_over(honest, env.raw, env.id), 10)
            await victim.wait_for(lambda: env.id in victim.store, 10)
    finally:
        await stop_all([victim])

