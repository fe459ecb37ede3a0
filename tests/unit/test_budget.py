"""The pure budgets: token buckets with debt, the byte-capped queue, the memory split,
the tag index, and what a gossip link does with them (no sockets)."""

from __future__ import annotations

import os

import pytest

from bridge.core import gossip as g
from bridge.core.budget import Allowance, ByteQueue, MemoryBudget
from bridge.core.gossip_wire import (
    Bye,
    ByeReason,
    EnvelopeBody,
    Have,
    Peers,
    Want,
    encode,
)
from bridge.store.index import TagIndex
from bridge.store.memory import MemoryStore
from tests.gossip_support import make_envelope
from tests.store_support import priced

MiB = 1024 * 1024


def test_allowance_throttles_then_floods_and_repays_with_time():
    al = Allowance(rate=10, burst=20, now=0, drop_after=40)
    assert al.spend(15, 0) == 10  # a new link starts with half a burst
    al = Allowance(rate=10, burst=20, now=0, drop_after=40)
    al.tokens = 20
    assert al.spend(15, 0) == 15
    assert al.spend(15, 0) == 5  # 5 left: the other 10 are ignored, and owed
    assert not al.flooded
    assert al.spend(30, 0) == 0 and not al.flooded  # owes 40: at the limit
    assert al.spend(1, 0) == 0 and al.flooded
    al2 = Allowance(rate=10, burst=20, now=0, drop_after=40)
    al2.tokens = 20
    al2.spend(50, 0)  # owes 30
    assert al2.spend(1, 3.0) == 0  # 3 s repaid 30 of it: back to 0 tokens, nothing to spend
    assert al2.spend(4, 3.5) == 4 and not al2.flooded  # 3.5 s: 5 more, less the 1 owed


def test_byte_queue_caps_bytes_not_frames():
    q = ByteQueue(100)
    assert all(q.push(b"x") for _ in range(60))  # sixty small frames fit
    assert not q.push(b"y" * 41) and q.bytes == 60  # one large one does not
    assert q.push(b"y" * 40) and q.bytes == 100 and len(q) == 61
    assert q.pop() == b"x" and q.bytes == 99
    assert q.clear() == 99 and q.bytes == 0 and len(q) == 0


def test_memory_budget_splits_one_number():
    mb = MemoryBudget(512 * MiB, 64)
    parts = mb.store_bytes * 1.45 + mb.queue_bytes + mb.request_ids * 160
    parts += mb.peer_has_ids * 160 * 64
    assert parts <= mb.total
    assert mb.link_queue_bytes * 64 >= mb.queue_bytes  # one link cannot take it all alone...
    assert mb.link_queue_bytes < mb.queue_bytes  # ...but no single link may hold the whole
    small = MemoryBudget(32 * MiB, 64)
    assert small.store_bytes < mb.store_bytes and small.link_request_ids >= 256
    with pytest.raises(ValueError):
        MemoryBudget(MiB, 64)


def test_tag_index_follows_adds_and_evictions():
    store = MemoryStore(max_count=3)
    t1, t2 = os.urandom(16), os.urandom(16)
    envs = [priced(1000, tag=t1, ttl=100 + 50 * k) for k in range(3)]
    envs.append(priced(1000, tag=t2, ttl=200, extra=1))
    for e in envs:
        assert store.add(e, 1000)
    # the fourth evicted what its work buys least per byte-second: same work, longest life
    assert sorted(store.tags.ids([t1])) == sorted(e.id for e in envs[0:2])
    assert store.tags.ids([t2]) == [envs[3].id]
    assert store.purge(1000 + 150) == 2
    assert store.tags.ids([t1]) == [] and store.tags.ids([t2]) == [envs[3].id]
    ti = TagIndex()
    ti.add(t1, b"a" * 32)
    ti.remove(b"a" * 32)
    ti.remove(b"a" * 32)  # twice: nothing
    assert len(ti) == 0 and ti.ids([t1]) == []


def _active(budgets: g.Budgets | None = None) -> tuple[g.Link, g.Link]:
    budgets = budgets or g.Budgets()
    a = g.Link(g.LocalInfo(os.urandom(16), 4), 0, budgets=budgets)
    b = g.Link(g.LocalInfo(os.urandom(16), 4), 0)
    a.receive(b.hello(1000), 0, wall=1000)
    b.receive(a.hello(1000), 0, wall=1000)
    return a, b


def test_cheap_frames_are_throttled_then_a_flood():
    a, _ = _active(g.Budgets(peers_rate=1, peers_burst=4, drop_factor=1))
    watch = encode(Peers(("127.0.0.1:1",)))
    assert a.receive(watch, 0) and a.receive(watch, 0)  # half the burst, to start with
    assert a.receive(watch, 0) == [] and a.throttled == 1  # throttled: ignored
    assert a.receive(watch, 0) == [] and a.receive(watch, 0) == []  # owes 3, limit 4
    a.receive(watch, 0)  # owes 4
    with pytest.raises(g.FloodError):
        a.receive(watch, 0)


def test_have_and_want_are_charged_by_id_and_trimmed():
    a, _ = _active(g.Budgets(have_rate=1, have_burst=20, want_rate=1, want_burst=10,
                             peers_burst=8, drop_factor=8))
    ids = tuple(os.urandom(32) for _ in range(30))
    (ev,) = a.receive(encode(Have(ids)), 0)
    assert ev == g.Announced(ids[:10])
    (ev,) = a.receive(encode(Want(ids)), 0)
    assert ev == g.Requested(ids[:5])
    assert len(a.peer_wants) == 5
    assert a.receive(encode(Have(ids)), 0) == []  # all owed: not even parsed
    assert a.throttled == 20 + 25 + 30
    peers = encode(Peers(("127.0.0.1:1",)))
    assert all(a.receive(peers, 0) for _ in range(4))
    assert a.receive(peers, 0) == []


def test_a_body_goes_once_per_window_whatever_the_number_of_wants():
    a, _ = _active(g.Budgets(resend_after=60))
    env = make_envelope(1000)
    want = encode(Want((env.id,)))
    sent = 0
    for t in range(50):  # fifty WANTs in 50 s: one body
        for ev in a.receive(want, t):
            assert isinstance(ev, g.Requested)
            sent += a.send_body(env.id, env.raw, t) is not None
    assert sent == 1 and not a.peer_wants
    (ev,) = a.receive(want, 61)  # after the window: once more
    assert a.send_body(env.id, env.raw, 61) is not None


def test_wants_we_send_are_bounded_and_expire():
    a, b = _active(g.Budgets(max_wanted=4, want_ttl=30))
    ids = [os.urandom(32) for _ in range(10)]
    frames, left = a.request(ids, 0)
    assert len(a.wanted) == 4 and left == ids[4:]
    _, left = a.request(ids[4:], 29)
    assert len(left) == 6  # still full
    _, left = a.request(ids[4:], 31)  # the first four forgotten
    assert len(left) == 2 and set(a.wanted) == set(ids[4:8])
    assert len(b.receive(frames[0], 0)) == 1


def test_peer_wants_are_bounded():
    a, _ = _active(g.Budgets(max_peer_wants=3))
    (ev,) = a.receive(encode(Want(tuple(os.urandom(32) for _ in range(10)))), 0)
    assert len(ev.ids) == 3 and len(a.peer_wants) == 3


def test_a_bye_after_ours_is_not_a_violation():
    a, _ = _active()
    a.bye(ByeReason.DUPLICATE, "already linked")
    assert a.state is g.State.CLOSED
    assert a.receive(encode(Bye(ByeReason.DUPLICATE, "already linked")), 0) == []
    assert a.receive(encode(Have((os.urandom(32),))), 0) == []


def test_many_tiny_frames_are_a_flood_whatever_their_bytes():
    a, _ = _active(g.Budgets(frames_rate=10, frames_burst=20))
    want = encode(Want((os.urandom(32),)))
    for _ in range(19):  # the HELLO was the first of the twenty
        a.receive(want, 0)
    with pytest.raises(g.FloodError, match="frame budget"):
        a.receive(want, 0)


def test_bodies_we_asked_for_are_not_charged_as_bytes():
    a, b = _active(g.Budgets(bytes_rate=1, bytes_burst=2000))
    envs = [make_envelope(1000, bucket=1024) for _ in range(4)]  # ~4.5 KB, past the burst
    frames, _ = a.request([e.id for e in envs], 0)
    for ev in b.receive(frames[0], 0):
        assert isinstance(ev, g.Requested)
    for e in envs:
        (ev,) = a.receive(b.send_body(e.id, e.raw, 0), 0)
        assert ev == g.BodyReceived(e.id, e.raw)
    unasked = make_envelope(1000)
    with pytest.raises(g.UnrequestedError):
        a.receive(encode(EnvelopeBody(unasked.raw)), 0)


def test_the_memory_budget_is_a_config_key_in_mebibytes():
    from bridge.config import ConfigError, parse

    assert parse("[p2p]\nmemory_budget_mb = 64\n").memory_budget_mb == 64
    assert parse("").memory_budget_mb == 512
    for bad in ("8", '"64"', "true"):
        with pytest.raises(ConfigError, match="memory_budget_mb"):
            parse(f"[p2p]\nmemory_budget_mb = {bad}\n")
