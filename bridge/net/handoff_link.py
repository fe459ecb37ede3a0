"""One hand-off link, the sender's end (docs/sharding.md, "Sending to another shard").

``offer`` dials a carrier, says HELLO with the hand-off flag (a fresh random node id,
no listen address, and ``0/0`` for its prefixes: the carrier learns nothing of what
this node carries or where it listens), checks from the carrier's HELLO that it
carries the shard, announces the ids, sends every body it asks for, and says BYE once
each id was asked for or ``answer_timeout`` passed without another WANT. The link is
never handed to the relay: nothing else crosses it (``bridge.core.gossip_handoff``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import aiohttp

from bridge.core import gossip as g
from bridge.core.errors import RemoteProtocolError
from bridge.core.gossip_wire import MAX_FRAME_SIZE, ByeReason
from bridge.net.dialer import DIAL_TIMEOUT

if TYPE_CHECKING:
    from bridge.net.node import Node

_CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR)


async def offer(node: Node, addr: str, shard: int, items: dict[bytes, bytes], *,
                answer_timeout: float) -> set[bytes] | None:
    """Offer ``items`` (id → envelope, all in ``shard``) to the node at ``addr`` on a
    hand-off link. The ids it asked for (and was sent), or None when no offer was made:
    not reachable, refused, or it does not carry the shard."""
    session = node._session
    if session is None or addr in node.selves or node.links.banned(addr):
        return None
    at = await node.dialer._in_scope(addr)  # a stranger's name or range: as the dialer does
    if at is None:
        return None
    url, headers = f"http://{addr}/p2p", None
    if at:
        url = f"http://{'[' + at + ']' if ':' in at else at}:{addr.rsplit(':', 1)[1]}/p2p"
        headers = {"Host": addr}
    try:
        async with asyncio.timeout(DIAL_TIMEOUT):
            ws = await session.ws_connect(url, headers=headers, max_msg_size=MAX_FRAME_SIZE,
                                          timeout=aiohttp.ClientWSTimeout(ws_close=2.0))
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        node.recent_errors.append(f"hand-off to {addr}: {type(e).__name__}")
        return None
    local = g.LocalInfo(os.urandom(16), node.config.base_bits, handoff=True)
    link = g.Link(local, time.monotonic(), budgets=node.link_budgets)
    try:
        return await _drive(ws, link, shard, items, node.config.hello_timeout, answer_timeout)
    except TimeoutError:
        node.recent_errors.append(f"hand-off to {addr}: no HELLO")
        return None
    except (RemoteProtocolError, ConnectionError, aiohttp.ClientError) as e:
        node.recent_errors.append(f"hand-off to {addr}: {e}")
        return None
    finally:
        await ws.close()


async def _drive(ws: aiohttp.ClientWebSocketResponse, link: g.Link, shard: int,
                 items: dict[bytes, bytes], hello_timeout: float,
                 answer_timeout: float) -> set[bytes] | None:
    loop = asyncio.get_running_loop()
    await ws.send_bytes(link.hello(int(time.time())))
    by = loop.time() + hello_timeout
    while link.peer is None:
        msg = await ws.receive(max(0.0, by - loop.time()))  # TimeoutError: no carrier here
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return None
        link.receive(msg.data, time.monotonic(), wall=int(time.time()))
    if not link.peer_carries(shard):
        await ws.send_bytes(link.bye(ByeReason.NORMAL, "not a carrier of the shard"))
        return None
    for frame in link.announce(items):
        await ws.send_bytes(frame)
    asked: set[bytes] = set()
    until = loop.time() + answer_timeout
    while len(asked) < len(items) and link.active:
        try:
            msg = await ws.receive(max(0.0, until - loop.time()))
        except TimeoutError:
            break  # no more WANTs: the carrier holds (or is fetching) the rest
        if msg.type in _CLOSING or msg.type is not aiohttp.WSMsgType.BINARY:
            break
        for ev in link.receive(msg.data, time.monotonic(), wall=int(time.time())):
            if isinstance(ev, g.Closed):
                return asked if asked else None  # refused (busy) before it asked
            if isinstance(ev, g.Requested):
                for eid in ev.ids:
                    raw = items.get(eid)
                    body = None if raw is None else link.send_body(eid, raw, time.monotonic())
                    if body is not None:
                        await ws.send_bytes(body)
                        asked.add(eid)
    if link.active:
        await ws.send_bytes(link.bye(ByeReason.NORMAL, "hand-off done"))
    return asked
