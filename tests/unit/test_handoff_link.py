"""Hand-off links in the gossip core (docs/sharding.md, "Sending to another shard";
``bridge.core.gossip_handoff``): HELLO flag bit 1, what such a link carries, its budget."""

from __future__ import annotations

import os
import time

import pytest

from bridge.core import gossip as g
from bridge.core import shards
from bridge.core.errors import RemoteProtocolError
from bridge.core.gossip_wire import (
    FindShard,
    FrameType,
    Have,
    Hello,
    Peers,
    Reconcile,
    Want,
    WatchShard,
    encode,
    parse,
)
from bridge.core.shards import prefix
from bridge.store.memory import MemoryStore
from tests.gossip_support import make_envelope

LOW, HIGH = prefix(0, 1), prefix(1, 1)


def carrier(carried=(HIGH,), *, light=False, budgets=g.DEFAULT_BUDGETS):
    store = MemoryStore()
    link = g.Link(g.LocalInfo(os.urandom(16), 4, light=light, shards=carried), time.time(),
                  source=None if light else store.index, budgets=budgets)
    return link, store


def sender(carried=(LOW,)):
    return g.Link(g.LocalInfo(os.urandom(16), 4, shards=carried, handoff=True), time.time(),
                  source=MemoryStore().index)


def open_link(s: g.Link, c: g.Link) -> int:
    now = int(time.time())
    hello = s.hello(now)
    assert parse(hello).handoff  # HELLO flag bit 1
    assert isinstance(c.receive(hello, now)[0], g.PeerReady)
    s.receive(c.hello(now), now)
    assert s.active and c.active and s.handoff and c.handoff
    return now


def in_shard(key: int, now: int):
    return make_envelope(now, tag=key.to_bytes(2, "big") + os.urandom(14))


def test_a_carrier_takes_the_offered_body_under_its_prefixes_and_gives_nothing_back():
    s, (c, _) = sender(), carrier()
    now = open_link(s, c)
    env = in_shard(0x9000, now)
    (have,) = s.announce([env.id])
    assert c.receive(have, now) == [g.Announced((env.id,))]
    wants, left = c.request([env.id], now)
    assert left == [] and len(wants) == 1
    assert s.receive(wants[0], now) == [g.Requested((env.id,))]
    body = s.send_body(env.id, env.raw, now)
    assert body is not None
    assert c.receive(body, now) == [g.BodyReceived(env.id, env.raw)]
    # nothing goes back: no announcement, no reconciliation, on either end
    assert c.announce([os.urandom(32)]) == []
    assert c.overlaps() == [] and s.overlaps() == []
    assert not c.handoff_spent and c.offered == 1 and c.taken == 1


def test_a_body_outside_the_carriers_prefixes_is_still_a_violation():
    s, (c, _) = sender(), carrier()
    now = open_link(s, c)
    env = in_shard(0x1000, now)  # the carrier holds the upper half only
    c.receive(s.announce([env.id])[0], now)
    c.request([env.id], now)
    s.receive(encode(Want((env.id,))), now)
    with pytest.raises(g.ShardError):
        c.receive(bytes([FrameType.ENVELOPE]) + env.raw, now)


def test_an_unrequested_body_on_a_hand_off_link_is_a_violation():
    s, (c, _) = sender(), carrier()
    now = open_link(s, c)
    env = in_shard(0x9000, now)
    with pytest.raises(g.UnrequestedError):
        c.receive(bytes([FrameType.ENVELOPE]) + env.raw, now)


@pytest.mark.parametrize("frame", [
    encode(Want((os.urandom(32),))),
    encode(Peers(("h:1",))),
    encode(FindShard(HIGH)),
    encode(Reconcile(b"\x62", reply=False, prefix=HIGH)),
    encode(WatchShard(HIGH)),
])
def test_a_sender_may_only_offer(frame):
    s, (c, _) = sender(), carrier()
    now = open_link(s, c)
    with pytest.raises(RemoteProtocolError, match="hand-off"):
        c.receive(frame, now)


@pytest.mark.parametrize("frame", [
    encode(Have((os.urandom(32),))),
    encode(Peers(("h:1",))),
    encode(FindShard(HIGH)),
])
def test_a_carrier_may_only_ask(frame):
    s, (c, _) = sender(), carrier()
    now = open_link(s, c)
    with pytest.raises(RemoteProtocolError, match="hand-off"):
        s.receive(frame, now)


def test_a_hand_off_link_offers_at_most_its_budget_of_ids():
    budgets = g.Budgets(handoff_ids=3)
    s, (c, _) = sender(), carrier(budgets=budgets)
    now = open_link(s, c)
    envs = [in_shard(0x9000 + i, now) for i in range(4)]
    (have,) = s.announce([e.id for e in envs[:3]])
    c.receive(have, now)
    wants, _ = c.request([e.id for e in envs[:3]], now)
    for w in wants:
        s.receive(w, now)
    for e in envs[:3]:
        body = s.send_body(e.id, e.raw, now)
        assert body is not None
        c.receive(body, now)
    assert c.handoff_spent  # the carrier's shell closes the link now
    with pytest.raises(g.FloodError):
        c.receive(s.announce([envs[3].id])[0], now)


def test_only_a_node_with_a_store_takes_a_hand_off_link():
    now = int(time.time())
    hand = encode(Hello(2, 4, now, os.urandom(16), False, "", (LOW,), handoff=True))
    for refuser in (carrier(light=True)[0], sender(),
                    g.Link(g.LocalInfo(os.urandom(16), 4), now)):  # no store
        with pytest.raises(g.HelloRefused) as e:
            refuser.receive(hand, now)
        assert e.value.reason is g.ByeReason.VERSION
    c, _ = carrier(shards.EVERYTHING)
    assert isinstance(c.receive(hand, now)[0], g.PeerReady)
    # an ordinary link is no hand-off link: it reconciles and announces as before
    plain, _ = carrier()
    plain.receive(encode(Hello(2, 4, now, os.urandom(16), False, "", (HIGH,))), now)
    plain.hello(now)
    assert not plain.handoff and plain.overlaps() == [HIGH]
