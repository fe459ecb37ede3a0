"""Shards in the gossip core: prefixes, HELLO version 2, reconciliation per prefix and
inventory per shard (docs/sharding.md, "What the protocol needs", items 2-4)."""

from __future__ import annotations

import os
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import gossip as g
from bridge.core import shards
from bridge.core.errors import LocalProtocolError, MalformedError, RemoteProtocolError
from bridge.core.gossip_wire import (
    MAX_FRAME_SIZE,
    FrameType,
    Hello,
    Reconcile,
    encode,
    parse,
)
from bridge.core.shards import ALL, Prefix, prefix
from bridge.store.memory import MemoryStore
from tests.gossip_support import make_envelope

LOW, HIGH = prefix(0, 1), prefix(1, 1)


def test_prefixes_name_ranges_of_shard_keys():
    assert ALL.holds(0) and ALL.holds(0xFFFF) and str(ALL) == "0/0"
    assert Prefix(0x8000, 1) == HIGH and HIGH.holds(0x8000) and not HIGH.holds(0x7FFF)
    assert shards.parse_prefix("5/4") == Prefix(0x5000, 4) and str(Prefix(0x5000, 4)) == "5/4"
    assert shards.of_key(0xABCD, 16) == Prefix(0xABCD, 16)
    assert shards.overlap(ALL, HIGH) == HIGH and shards.overlap(LOW, HIGH) is None
    assert shards.overlaps((LOW,), (prefix(1, 2), prefix(2, 2))) == [prefix(1, 2)]
    assert shards.canonical([HIGH, prefix(3, 2), LOW, HIGH]) == (LOW, HIGH)
    for bad in ("2/1", "1", "-1/1", "1/17", "a/b", "1/1/1", "99999999/16"):
        with pytest.raises(ValueError):
            shards.parse_prefix(bad)
    with pytest.raises(LocalProtocolError):
        Prefix(1, 1)  # bits past the depth
    with pytest.raises(LocalProtocolError):
        shards.canonical([prefix(i, 5) for i in range(17)])


prefixes = st.builds(lambda d, v: prefix(v % (1 << d), d), st.integers(0, 16),
                     st.integers(0, 1 << 16))


@settings(max_examples=300, deadline=None)
@given(ps=st.lists(prefixes, min_size=1, max_size=40), light=st.booleans(),
       listen=st.sampled_from(["", "h:1", "[::1]:45069"]))
def test_hello_v2_round_trips_its_canonical_prefixes(ps, light, listen):
    try:
        carried = shards.canonical(ps)
    except LocalProtocolError:
        return  # more than 16 after merging
    hello = Hello(2, 7, 1_800_000_000, os.urandom(16), light, listen, carried)
    assert parse(encode(hello)) == hello


def _hello2(flags=0, body_tail=b""):
    head = struct.pack(">BBBQ16sB", 2, 4, flags, 1, bytes(16), 0)
    return bytes([FrameType.HELLO]) + head + body_tail


@pytest.mark.parametrize("tail", [
    b"",  # no count
    b"\x00",  # carries nothing
    b"\x01",  # count without its prefix
    b"\x01\x01\x80",  # cut short
    b"\x01\x01\x80\x00\x00",  # trailing byte
    b"\x01\x11\x00\x00",  # depth 17
    b"\x01\x01\x40\x00",  # bits past the depth
    b"\x02\x01\x80\x00\x01\x00\x00",  # out of order
    b"\x02\x00\x00\x00\x01\x80\x00",  # the second inside the first
    b"\x02\x01\x80\x00\x01\x80\x00",  # repeated
    b"\x11" + b"\x10\x00\x00" * 17,  # more than 16
])
def test_a_malformed_hello_v2_is_a_violation(tail):
    with pytest.raises(MalformedError):
        parse(_hello2(body_tail=tail))


def test_hello_flags_and_versions():
    ok = b"\x01\x00\x00\x00"
    assert parse(_hello2(1, ok)).light
    assert parse(_hello2(2, ok)).handoff
    with pytest.raises(MalformedError):
        parse(_hello2(4, ok))  # unknown flag
    v1 = parse(encode(Hello(1, 4, 1, bytes(16), False, "h:1")))
    assert v1.shards == shards.EVERYTHING  # a version-1 peer carries everything
    with pytest.raises(MalformedError):
        parse(encode(Hello(1, 4, 1, bytes(16), False, "h:1")) + ok)  # v1 has no prefixes
    with pytest.raises(LocalProtocolError):
        Hello(1, 4, 1, bytes(16), False, "", (HIGH,))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_any_hello_bytes_parse_or_are_a_violation(junk):
    frame = bytes([FrameType.HELLO]) + junk
    try:
        msg = parse(frame)
    except RemoteProtocolError:
        return
    assert isinstance(msg, Hello) and len(frame) <= MAX_FRAME_SIZE
    if msg.version == 2:
        assert encode(msg) == frame  # one encoding per hello


def link(carried=shards.EVERYTHING, store=None):
    now = int(time.time())
    return g.Link(g.LocalInfo(os.urandom(16), 4, shards=carried), now,
                  source=store.index if store is not None else None)


def connect(a, b):
    now = int(time.time())
    b.receive(a.hello(now), now)
    a.receive(b.hello(now), now)
    return now


def env_in(shard: int, now: int):
    return make_envelope(now, tag=shard.to_bytes(2, "big") + os.urandom(14))


def test_a_hand_off_hello_is_refused_without_a_store_and_a_v1_hello_accepted():
    now = int(time.time())
    a = link()
    hand = Hello(2, 4, now, os.urandom(16), False, "", shards.EVERYTHING, handoff=True)
    with pytest.raises(g.HelloRefused) as e:
        a.receive(encode(hand), now)
    assert e.value.reason is g.ByeReason.VERSION
    b = link((LOW,), MemoryStore())
    b.receive(encode(Hello(1, 4, now, os.urandom(16), False, "h:1")), now)
    b.hello(now)
    assert b.active and b.peer_shards == shards.EVERYTHING and b.peer_carries(0xFFFF)
    assert b.overlaps() == []  # no shard key in version 1's reconciliation
    with pytest.raises(LocalProtocolError):
        b.start_reconcile(now)
    v1_reconcile = bytes([FrameType.RECONCILE]) + b"\x61\x00\x01" + bytes(16)
    assert b.receive(v1_reconcile, now) == []  # not answered, not a violation
    # it announces everything (it knows no shards): a body outside is dropped, not blamed
    outside = make_envelope(now, tag=b"\xc0\x00" + os.urandom(14))
    b.request([outside.id], now)
    assert b.receive(bytes([FrameType.ENVELOPE]) + outside.raw, now) == []
    assert b.active and outside.id not in b.wanted
    with pytest.raises(g.UnrequestedError):  # still asked for, or a violation
        b.receive(bytes([FrameType.ENVELOPE]) + outside.raw, now)


def test_a_body_outside_our_prefixes_is_a_violation_found_before_hashing():
    a, b = link(), link((LOW,))
    now = connect(a, b)
    inside, outside = env_in(0x1234, now), env_in(0x9234, now)
    frames, _ = b.request([inside.id, outside.id], now)
    for f in frames:
        a.receive(f, now)
    (got,) = b.receive(a.send_body(inside.id, inside.raw, now), now)
    assert got == g.BodyReceived(inside.id, inside.raw)
    with pytest.raises(g.ShardError):  # even though it was asked for
        b.receive(bytes([FrameType.ENVELOPE]) + outside.raw, now)


def test_bodies_outside_the_peers_prefixes_are_not_sent():
    a, b = link(), link((HIGH,))
    now = connect(a, b)
    low, high = env_in(0x0001, now), env_in(0xF001, now)
    frames, _ = b.request([low.id, high.id], now)
    for f in frames:
        a.receive(f, now)
    assert a.send_body(low.id, low.raw, now) is None  # it would refuse it
    assert low.id not in a.peer_wants
    assert a.send_body(high.id, high.raw, now) is not None
    assert not a.peer_carries(0x0001) and a.peer_carries(0xF001)


def fill(store, now, keys):
    envs = [env_in(k, now) for k in keys]
    for e in envs:
        assert store.add(e, now)
    return envs


def run(a, b, now, prefix_=None):
    frame = a.start_reconcile(now, prefix_)
    while True:
        evs = b.receive(frame, now)
        (out,) = evs
        evs = a.receive(out.frame, now)
        (ev,) = evs
        if isinstance(ev, g.ReconcileDone):
            return ev
        frame = ev.frame


def test_reconciliation_covers_the_prefix_both_carry():
    now = int(time.time())
    full, half = MemoryStore(), MemoryStore()
    shared = fill(full, now, [0x0100, 0x8100])
    for e in shared:
        half.add(e, now)
    only_full = fill(full, now, [0x0200, 0x0300, 0x8200, 0x8300, 0x9000])
    only_half = fill(half, now, [0xC000, 0x4000])
    a, b = link(store=full), link((HIGH,), half)
    connect(a, b)
    assert a.overlaps() == b.overlaps() == [HIGH]
    done = run(a, b, now)  # the default: the first prefix both carry
    assert done.prefix == HIGH
    assert set(done.have) == {e.id for e in only_full if e.tag[0] >= 0x80}
    assert set(done.need) == {only_half[0].id}  # 0x4000 is outside the session
    done = run(b, a, now, prefix(3, 2))  # a part of what both carry
    assert set(done.have) == {only_half[0].id} and done.need == ()
    with pytest.raises(LocalProtocolError):
        b.start_reconcile(now, LOW)  # b does not carry it


def test_a_reconciliation_of_a_prefix_we_do_not_carry_is_a_violation():
    now = int(time.time())
    a, b = link(store=MemoryStore()), link((HIGH,), MemoryStore())
    connect(a, b)
    frame = encode(Reconcile(b"\x62\x00\x02\x00", reply=False, prefix=LOW))
    with pytest.raises(g.ShardError):
        b.receive(frame, now)
    a2, b2 = link(store=MemoryStore()), link((HIGH,), MemoryStore())
    connect(a2, b2)
    start = a2.start_reconcile(now)
    (reply,) = b2.receive(start, now)
    wrong = encode(Reconcile(parse(reply.frame).payload, reply=True, prefix=prefix(3, 2)))
    with pytest.raises(RemoteProtocolError):
        a2.receive(wrong, now)  # a reply must name the session's prefix


def test_a_store_index_keeps_each_prefix_contiguous_and_purges_by_expiry():
    now = int(time.time())
    store = MemoryStore()
    envs = [make_envelope(now, ttl=100 + i, tag=(0xFFFF - i * 997).to_bytes(2, "big")
                          + os.urandom(14)) for i in range(30)]
    for e in envs:
        store.add(e, now)
    keys = list(store.index.iter_keys())
    assert keys == sorted(keys) and [k[:2] for k in keys] == sorted(e.tag[:2] for e in envs)
    assert store.purge(now + 100 + 9) == 10  # the ten earliest, wherever their shard
    assert {e.id for e in envs[10:]} == {k[10:] for k in store.index.iter_keys()}
    assert [r for r in store.iter_raw()] == [e.raw for e in envs[10:]]  # by expiry


def test_the_config_key_names_the_prefixes_and_defaults_to_everything():
    from bridge.config import ConfigError, parse
    assert parse("").shards == shards.EVERYTHING
    assert parse('[p2p]\nshards = ["1/1", "3/2"]').shards == (HIGH,)
    assert parse('[p2p]\nshards = ["0/2", "1/1"]').shards == (prefix(0, 2), HIGH)
    for bad in ('"0/0"', "[]", '["2/1"]', '["0/17"]', "[1]", '["x"]'):
        with pytest.raises(ConfigError):
            parse(f"[p2p]\nshards = {bad}")


edge_keys = st.sampled_from([0x0000, 0x0001, 0x3FFF, 0x4000, 0x7FFF, 0x8000, 0xC000, 0xFFFF])
keyed = st.tuples(st.one_of(edge_keys, st.integers(0, 0xFFFF)), st.integers(0, 40),
                  st.binary(min_size=32, max_size=32))
short_prefixes = st.builds(lambda d, v: prefix(v % (1 << d), d), st.integers(0, 3),
                           st.integers(0, 7))


@settings(max_examples=150, deadline=None)
@given(items=st.lists(keyed, max_size=150, unique_by=lambda t: t[2]),
       sides=st.lists(st.sampled_from("aab"), min_size=150, max_size=150),
       p=st.one_of(short_prefixes, prefixes))
def test_a_session_over_a_prefix_learns_exactly_the_difference_under_it(items, sides, p):
    from bridge.core.reconcile import PrefixView, Reconciler
    from bridge.store.index import SortedIndex
    a, b = SortedIndex(), SortedIndex()
    for (shard, expiry, i), side in zip(items, sides, strict=False):
        for idx in ((a, b) if i[0] % 3 == 0 else (a,) if side == "a" else (b,)):
            idx.add(shard, expiry, i)
    va, vb = PrefixView(a, p.start, p.end), PrefixView(b, p.start, p.end)
    init = Reconciler(va, initiator=True)
    msg = init.initiate()
    while msg is not None:
        reply = Reconciler(vb, initiator=False).receive(msg)
        assert reply is not None
        msg = init.receive(reply)
    under = {k for k in set(a.iter_keys()) ^ set(b.iter_keys())
             if p.holds(int.from_bytes(k[:2], "big"))}
    assert set(init.have) | set(init.need) == {k[10:] for k in under}
    assert set(init.have) == {k[10:] for k in under if k in set(a.iter_keys())}
