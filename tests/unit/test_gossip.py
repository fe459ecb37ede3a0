"""The gossip link machine on a fake two-peer link (no sockets)."""

from __future__ import annotations

import os
import time

import pytest

from bridge.core import gossip as g
from bridge.core.errors import LocalProtocolError, RemoteProtocolError
from bridge.core.gossip_wire import ByeReason, Have, Hello, encode, parse
from bridge.store.memory import MemoryStore
from tests.gossip_support import make_envelope


def pair(store_a=None, store_b=None):
    now = int(time.time())
    a = g.Link(g.LocalInfo(os.urandom(16), 4), now, source=store_a.index if store_a else None)
    b = g.Link(g.LocalInfo(os.urandom(16), 4), now, source=store_b.index if store_b else None)
    b.receive(a.hello(now), now)
    a.receive(b.hello(now), now)
    assert a.active and b.active
    return a, b, now


def test_announce_want_body_and_no_body_twice():
    a, b, now = pair()
    env = make_envelope(now)
    (have,) = a.announce([env.id])
    assert a.announce([env.id]) == []  # the peer is now known to have it
    (ev,) = b.receive(have, now)
    assert ev == g.Announced((env.id,))
    assert b.announce([env.id]) == []  # never announced back
    frames, left = b.request([env.id], now)
    assert left == []
    (req,) = a.receive(frames[0], now)
    assert req == g.Requested((env.id,))
    body = a.send_body(env.id, env.raw, now)
    assert body is not None and a.send_body(env.id, env.raw, now) is None
    (got,) = b.receive(body, now)
    assert got == g.BodyReceived(env.id, env.raw)
    with pytest.raises(g.UnrequestedError):
        b.receive(body, now)  # the same body again: never asked twice


def test_an_id_queued_twice_is_announced_once():
    a, _, _ = pair()
    eid, other = os.urandom(32), os.urandom(32)
    (have,) = a.announce([eid, other, eid])
    assert parse(have) == Have((eid, other))


def test_bodies_are_owed_in_the_order_asked():
    """A sender's messages go out in the order they were announced and asked for."""
    a, b, now = pair()
    ids = [os.urandom(32) for _ in range(200)]
    frames, left = b.request(ids, now)
    assert left == []
    for frame in frames:
        a.receive(frame, now)
    assert list(a.peer_wants) == ids


def test_nothing_before_hello_and_unknown_type():
    now = int(time.time())
    a = g.Link(g.LocalInfo(os.urandom(16), 4), now)
    with pytest.raises(RemoteProtocolError):
        a.receive(encode(Have(())), now)
    with pytest.raises(RemoteProtocolError):
        parse(b"\x7f")
    with pytest.raises(LocalProtocolError):
        a.announce([b"x" * 32])


@pytest.mark.parametrize(
    ("version", "skew", "reason"), [(3, 0, ByeReason.VERSION), (1, 3600, ByeReason.CLOCK)]
)
def test_hello_refused_with_reason(version, skew, reason):
    now = int(time.time())
    a = g.Link(g.LocalInfo(os.urandom(16), 4), now)
    hello = encode(Hello(version, 4, now + skew, os.urandom(16), False, "h:1"))
    with pytest.raises(g.HelloRefused) as exc:
        a.receive(hello, now)
    assert exc.value.reason == reason


def test_reconcile_over_the_link_finds_the_difference():
    now = int(time.time())
    sa, sb = MemoryStore(), MemoryStore()
    shared = [make_envelope(now) for _ in range(50)]
    only_a, only_b = make_envelope(now), make_envelope(now)
    for e in shared:
        sa.add(e, now)
        sb.add(e, now)
    sa.add(only_a, now)
    sb.add(only_b, now)
    a, b, now = pair(sa, sb)
    frame = a.start_reconcile()
    done = None
    while done is None:
        (out,) = b.receive(frame, now)
        (ev,) = a.receive(out.frame, now)
        if isinstance(ev, g.ReconcileDone):
            done = ev
        else:
            frame = ev.frame
    assert done.have == (only_a.id,) and done.need == (only_b.id,)


def test_a_reconciliation_the_peer_ignores_is_given_up_and_its_late_reply_dropped():
    now = int(time.time())
    sa, sb = MemoryStore(), MemoryStore()
    sa.add(make_envelope(now), now)
    sb.add(make_envelope(now), now)
    a, b, now = pair(sa, sb)
    frame = a.start_reconcile(100.0)
    assert a.reconciling and not a.abandon_stalled(159.0, 60.0)
    assert a.abandon_stalled(160.0, 60.0)
    assert not a.reconciling and a.reconcile_ignored
    (late,) = b.receive(frame, now)  # the reply comes after all
    assert a.receive(late.frame, now) == []
    c, _d, _ = pair(sa, sb)
    with pytest.raises(RemoteProtocolError, match="without a session"):
        c.receive(late.frame, now)  # a reply nobody asked for is still a violation
    assert not g.Link(g.LocalInfo(os.urandom(16), 4), now).abandon_stalled(1e9, 1.0)


def test_byte_budget_and_envelope_budget():
    now = int(time.time())
    budgets = g.Budgets(bytes_rate=10, bytes_burst=200, envelopes_rate=1, envelopes_burst=3)
    a = g.Link(g.LocalInfo(os.urandom(16), 4), now, budgets=budgets)
    b = g.Link(g.LocalInfo(os.urandom(16), 4), now)
    a.receive(b.hello(now), now)
    a.hello(now)
    _frames, left = a.request([os.urandom(32) for _ in range(5)], now)
    assert len(left) == 2
    with pytest.raises(g.FloodError):
        a.receive(encode(Have(tuple(os.urandom(32) for _ in range(10)))), now)


def test_token_bucket_refills_with_time():
    tb = g.TokenBucket(rate=2, burst=4, now=0)
    assert tb.take(4, 0) and not tb.take(1, 0)
    assert tb.take(2, 1.0) and not tb.take(1, 1.0)
