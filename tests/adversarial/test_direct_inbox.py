"""The direct-delivery inbox cannot be filled for good.

The daemon's own direct-delivery part (``bridge.direct.DirectInbox``) on a real
node, reached over real loopback HTTP by the real kkv client. An envelope can pass
the endpoint's check and then be refused by the node: it expired in between (the
endpoint checks at one second, the node at a later one). Here the endpoint's clock
runs 30 s behind the node's, so every such envelope is one that "expired between
the check and the hand-off": the endpoint accepts it, the node refuses it. More
of them than the inbox has slots arrive, and an honest envelope after them still
gets in. And an inbox nobody takes from lets an envelope go once it expires.
Last, the race itself against a real ``paranoim run`` over its real port.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from bridge.config import Config
from bridge.control import ControlClient, running_daemon
from bridge.core import kkv, kkv_records
from bridge.core.envelope import envelope_id
from bridge.core.identity import Identity
from bridge.direct import DirectInbox
from bridge.net.kkv import KkvInbox, KkvServer, KkvSettings
from bridge.net.kkv_client import DirectDeliveryError, deliver_direct, solve_in_thread
from bridge.net.node import Node, NodeConfig
from bridge.store.memory import MemoryStore
from tests.daemonproc import Paranoim
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


# --- the same against a real daemon ---------------------------------------------------

SESSIONS = 24  # deliveries fired together at each second boundary
BOUNDARY_LEAD = 0.012  # s before the boundary they are fired: it falls amid their handling


async def _session(s: aiohttp.ClientSession, base: str,
                   domain_pk: bytes) -> tuple[Identity, bytes, kkv_records.SessionOffer]:
    """A kkv session opened on the endpoint (challenge solved, keys exchanged), unused."""
    me = Identity.from_seed(secrets.token_bytes(32))
    async with s.post(f"{base}/pow", json={"client_pk": kkv_records.b64(me.public)}) as r:
        resp, challenge = kkv_records.ChallengeResponse.from_json(await r.read())
    nonce = await solve_in_thread(challenge.digest, challenge.bits)
    x_secret = secrets.token_bytes(32)
    req = kkv.make_exchange(resp, nonce, me.secret_key, x_secret)
    async with s.post(f"{base}/exchange_keys", json=req.to_json()) as r:
        offer = kkv_records.SessionOffer.from_json(await r.read())
    return me, x_secret, offer


async def test_envelopes_expiring_in_the_hand_off_leave_a_real_daemons_inbox(
        sandboxes: Callable[[str], Paranoim], free_port: Callable[[], int]) -> None:
    """A real ``paranoim run`` over its real port: envelopes that expire on a second's
    boundary are delivered, many at once, just before it, until the daemon reports one
    that its endpoint accepted and its node then refused (the second turned between the
    two checks). Its slot is free again; an honest delivery afterwards is received."""
    pim = sandboxes("victim")
    pim.start_daemon(free_port=free_port)
    rt = running_daemon(pim.data_dir)
    assert rt is not None
    control = ControlClient(rt)
    base = f"http://127.0.0.1:{pim.runtime()['ports']['p2p']}"  # type: ignore[index]
    bits = 8  # start_daemon's difficulty
    rounds = 0
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/get_domain_pk") as r:
            domain_pk = kkv_records.unb64((await r.json())["domain_pk"], 32, "domain_pk")
        deadline = time.monotonic() + 120
        while (direct := (await control.call("status"))["direct"])["refused"] == 0:
            assert time.monotonic() < deadline, f"no delivery straddled a boundary in {rounds}"
            rounds += 1
            sessions = await asyncio.gather(*(_session(s, base, domain_pk)
                                              for _ in range(SESSIONS)))
            boundary = int(time.time()) + 2
            msgs = [kkv.make_message(offer, domain_pk=domain_pk, client_pk=me.public,
                                     client_sk=me.secret_key, client_x25519_secret=x,
                                     envelope=make_envelope(now=boundary - 2, ttl=2,
                                                            base_bits=bits, text=str(i)),
                                     now=int(time.time()))
                    for i, (me, x, offer) in enumerate(sessions)]
            await asyncio.sleep(boundary - BOUNDARY_LEAD - time.time())  # aim at the boundary

            async def post(m: kkv_records.MessageRequest) -> int:
                async with s.post(f"{base}/msg", json=m.to_json()) as r:
                    return r.status  # 200 taken, 422 expired at the endpoint's check

            assert set(await asyncio.gather(*map(post, msgs))) <= {200, 422}
        assert direct["inbox"] == 0, direct  # the refused left the inbox with the rest
        async with s.get(f"{base}/status") as r:
            assert (await r.json())["inbox"]["count"] == 0
        honest = make_envelope(now=int(time.time()), ttl=3600, base_bits=bits)
        await deliver_direct(s, base, honest)
    after = (await control.call("status"))["direct"]
    assert after["received"] == direct["received"] + 1 and after["inbox"] == 0, after
    print(f"\n{rounds} rounds of {SESSIONS} deliveries at a boundary: {direct['refused']} "
          f"accepted by the endpoint and refused by the node, {direct['received']} received")
