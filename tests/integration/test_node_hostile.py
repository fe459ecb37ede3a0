"""A hostile peer is cut off while honest traffic still gets through."""

from __future__ import annotations

import os
import time

import aiohttp

from bridge.core import gossip as g
from bridge.core.envelope import envelope_id
from bridge.core.gossip_wire import ByeReason, FrameType, Have, Hello, parse
from bridge.core.gossip_wire import encode as enc
from tests.gossip_support import (
    LOW_BITS,
    has_all,
    linked,
    make_envelope,
    start_nodes,
    stop_all,
    wait_all,
)


class Hostile:
    """A raw WebSocket peer that speaks the protocol only as far as it likes."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.port = session, port
        self.node_id = os.urandom(16)

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        ws = await self.session.ws_connect(f"http://127.0.0.1:{self.port}/p2p")
        hello = Hello(1, LOW_BITS, int(time.time()), self.node_id, False, "")
        await ws.send_bytes(enc(hello))
        first = await ws.receive_bytes(timeout=5)
        assert parse(first).__class__ is Hello
        return ws

    @staticmethod
    async def bye_reason(ws: aiohttp.ClientWebSocketResponse) -> ByeReason | None:
        """Read until the node closes the link; the BYE reason it gave, if any."""
        reason = None
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data[0] == FrameType.BYE:
                reason = ByeReason(msg.data[1])
        return reason


async def test_hostile_peer_is_cut_off_and_honest_traffic_flows():
    a, b = await start_nodes(2, budgets=g.Budgets(envelopes_rate=20, envelopes_burst=40))
    async with aiohttp.ClientSession() as session:
        try:
            a.add_peer(f"127.0.0.1:{b.port}")
            await wait_all([a, b], linked(1), 5)
            now = int(time.time())

            # 1. garbage frame: unknown type → disconnected and banned
            h = Hostile(session, b.port)
            ws = await h.connect()
            await ws.send_bytes(b"\xee garbage")
            assert await h.bye_reason(ws) == ByeReason.PROTOCOL
            ws = await h.session.ws_connect(f"http://127.0.0.1:{b.port}/p2p")
            await ws.send_bytes(enc(Hello(1, LOW_BITS, now, h.node_id, False, "")))
            await ws.receive_bytes(timeout=5)  # its hello, then the refusal
            assert await h.bye_reason(ws) == ByeReason.BANNED

            # 2. invalid PoW, 3. expired, 4. replay of a body it was not asked for
            weak = make_envelope(now, weak=True)
            expired = make_envelope(now - 7200, ttl=3600)  # expired an hour ago
            honest = make_envelope(now)
            await a.publish(honest.raw)
            await wait_all([b], has_all({honest.id}), 5)
            for bad in (weak.raw, expired.raw):
                h = Hostile(session, b.port)
                ws = await h.connect()
                await ws.send_bytes(enc(Have((envelope_id(bad),))))
                want = parse(await ws.receive_bytes(timeout=5))
                while not isinstance(want, g.Want):
                    want = parse(await ws.receive_bytes(timeout=5))
                await ws.send_bytes(bytes([FrameType.ENVELOPE]) + bad)
                assert await h.bye_reason(ws) == ByeReason.PROTOCOL
            h = Hostile(session, b.port)
            ws = await h.connect()
            await ws.send_bytes(bytes([FrameType.ENVELOPE]) + honest.raw)  # replay, unasked
            assert await h.bye_reason(ws) == ByeReason.PROTOCOL

            # 5. valid-PoW flood: the node asks it for no more than its budget
            h = Hostile(session, b.port)
            ws = await h.connect()
            flood = {}
            for _ in range(200):
                e = make_envelope(now)
                flood[e.id] = e.raw
            await ws.send_bytes(enc(Have(tuple(flood))))
            asked: set[bytes] = set()
            honest2 = make_envelope(now)
            await a.publish(honest2.raw)  # honest traffic during the flood
            while len(asked) < 40:
                msg = parse(await ws.receive_bytes(timeout=5))
                if isinstance(msg, g.Want):
                    asked.update(msg.ids)
            assert len(asked) <= 41  # burst of 40 (+1 refilled), not 200
            for eid in asked:
                await ws.send_bytes(bytes([FrameType.ENVELOPE]) + flood[eid])
            await wait_all([b], has_all({honest2.id}), 5)
            # pushing more than it was asked for gets it cut off
            extra = next(i for i in flood if i not in asked)
            await ws.send_bytes(bytes([FrameType.ENVELOPE]) + flood[extra])
            assert await h.bye_reason(ws) == ByeReason.PROTOCOL
            assert len(b.store) <= 2 + 41
            assert b.health()["banned"] >= 5
            # the honest link survived all of it
            assert len(b.active_conns()) == 1 and len(a.active_conns()) == 1
        finally:
            await stop_all([a, b])


async def test_clock_skew_and_unknown_version_are_refused_with_a_reason():
    (a,) = await start_nodes(1)
    async with aiohttp.ClientSession() as session:
        try:
            for hello, reason in (
                (
                    Hello(1, LOW_BITS, int(time.time()) + 3600, os.urandom(16), False, ""),
                    ByeReason.CLOCK,
                ),
                (
                    Hello(9, LOW_BITS, int(time.time()), os.urandom(16), False, ""),
                    ByeReason.VERSION,
                ),
            ):
                ws = await session.ws_connect(f"http://127.0.0.1:{a.port}/p2p")
                await ws.send_bytes(enc(hello))
                assert await Hostile.bye_reason(ws) == reason
            assert a.health()["banned"] == 0  # refused, not banned
        finally:
            await stop_all([a])


async def test_oversized_frame_is_cut_off():
    (a,) = await start_nodes(1)
    async with aiohttp.ClientSession() as session:
        try:
            h = Hostile(session, a.port)
            ws = await h.connect()
            await ws.send_bytes(bytes([FrameType.ENVELOPE]) + bytes(1 << 20))
            await Hostile.bye_reason(ws)
            assert ws.closed
            assert a.health()["banned"] >= 1
        finally:
            await stop_all([a])
