"""Light nodes by shard in the gossip core (docs/sharding.md, "Light nodes"; item 7):
WATCH_SHARD, the reconciliation the full node answers it with, and what each end then
sends and refuses. Two ``Link``s joined by hand, no I/O."""

from __future__ import annotations

import os
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import gossip as g
from bridge.core.errors import LocalProtocolError, MalformedError, RemoteProtocolError
from bridge.core.gossip_light import light_prefixes
from bridge.core.gossip_wire import FrameType, Have, Reconcile, WatchShard, encode, parse
from bridge.core.shards import ALL, EVERYTHING, prefix
from bridge.store.index import SortedIndex
from bridge.store.memory import MemoryStore
from tests.gossip_support import make_envelope

LOW, HIGH = prefix(0, 1), prefix(1, 1)
MINE = prefix(0b101, 3)  # shard keys 0xA000..0xBFFF


def full_link(store, carried=EVERYTHING, budgets=g.DEFAULT_BUDGETS):
    return g.Link(g.LocalInfo(os.urandom(16), 4, shards=carried), int(time.time()),
                  source=store.index, budgets=budgets)


def light_link(ids):
    return g.Link(g.LocalInfo(os.urandom(16), 4, light=True), int(time.time()), source=ids)


def connect(a, b):
    now = int(time.time())
    b.receive(a.hello(now), now)
    a.receive(b.hello(now), now)
    return now


def env_in(shard, now):
    return make_envelope(now, tag=shard.to_bytes(2, "big") + os.urandom(14))


def reconcile(full, light, first, now):
    """Run the session ``first`` started to its end; the full side's last events."""
    frame = first
    while True:
        (out,) = light.receive(frame, now)
        evs = full.receive(out.frame, now)
        if isinstance(evs[0], g.ReconcileDone):
            return evs
        (nxt,) = evs
        frame = nxt.frame


def test_watch_shard_is_a_prefix_and_the_old_tag_list_is_refused():
    frame = encode(WatchShard(MINE))
    assert frame == bytes([FrameType.WATCH_SHARD, 3, 0xA0, 0x00])
    assert parse(frame) == WatchShard(MINE)
    old_watch = bytes([0x08]) + struct.pack(">H", 1) + os.urandom(16)  # WATCH of one tag
    for bad in (old_watch, bytes([0x08]) + struct.pack(">H", 0), frame[:-1], frame + b"\0",
                bytes([0x08, 17, 0, 0]), bytes([0x08, 1, 0x40, 0])):  # depth 17; bits past it
        with pytest.raises(MalformedError):
            parse(bad)


@given(st.binary(max_size=40))
def test_any_watch_shard_bytes_parse_or_are_a_violation(body):
    try:
        msg = parse(bytes([FrameType.WATCH_SHARD]) + body)
    except RemoteProtocolError:
        return
    assert isinstance(msg, WatchShard) and encode(msg) == bytes([FrameType.WATCH_SHARD]) + body


def test_the_full_node_reconciles_the_prefix_and_announces_what_the_light_one_lacks():
    now = int(time.time())
    store, ids = MemoryStore(), SortedIndex()
    under = [env_in(0xA000 + i, now) for i in range(40)]
    outside = [env_in(0x1000 + i, now) for i in range(20)]
    for e in under + outside:
        assert store.add(e, now)
    fetched = under[:25]  # the light node fetched these before (kept or dropped)
    for e in fetched:
        ids.add(int.from_bytes(e.tag[:2], "big"), e.expiry, e.id)
    extra = env_in(0xA999, now)  # one the full node lacks: not asked of the light node
    ids.add(0xA999, extra.expiry, extra.id)
    full, light = full_link(store), light_link(ids)
    connect(full, light)
    assert light.overlaps() == [] and full.overlaps() == []  # no ordinary sessions
    evs = full.receive(light.watch_shard(MINE), now)
    assert evs[0] == g.ShardWatched(MINE) and full.peer_watch == (MINE,)
    start = evs[1].frame
    assert parse(start).prefix == MINE  # the full node initiates over the prefix
    full.announce([e.id for e in under])  # announced before: remembered as the peer's
    (done,) = reconcile(full, light, start, now)
    assert set(done.have) == {e.id for e in under[25:]} and done.need == ()
    assert done.prefix == MINE
    (have,) = full.announce(done.have)  # announced again: the light node lacks them
    assert set(parse(have).ids) == set(done.have)
    # from now on: only envelopes under the prefix go to the light peer
    assert full.peer_carries(0xA123) and not full.peer_carries(0x1000)
    assert light.carries(0xA123) and not light.carries(0xC000)


def test_bodies_and_sessions_outside_the_watched_prefix_are_violations():
    now = int(time.time())
    store = MemoryStore()
    inside, out = env_in(0xA001, now), env_in(0x1001, now)
    store.add(inside, now)
    store.add(out, now)
    full, light = full_link(store), light_link(SortedIndex())
    connect(full, light)
    full.receive(light.watch_shard(MINE), now)
    frames, _ = light.request([inside.id, out.id], now)
    for f in frames:
        full.receive(f, now)
    assert full.send_body(out.id, out.raw, now) is None  # outside: never sent
    (got,) = light.receive(full.send_body(inside.id, inside.raw, now), now)
    assert got == g.BodyReceived(inside.id, inside.raw)
    with pytest.raises(g.ShardError):  # asked for, but outside what it watches
        light.receive(bytes([FrameType.ENVELOPE]) + out.raw, now)
    light2 = light_link(SortedIndex())
    full2 = full_link(MemoryStore())
    connect(full2, light2)
    light2.watch_shard(MINE)
    with pytest.raises(g.ShardError):  # a session over a prefix the light node did not ask
        light2.receive(encode(Reconcile(b"\x62\x00\x02\x00", reply=False, prefix=LOW)), now)


def test_who_may_send_watch_shard_and_for_what():
    now = int(time.time())
    frame = encode(WatchShard(MINE))
    a, b = full_link(MemoryStore()), full_link(MemoryStore())
    connect(a, b)
    with pytest.raises(RemoteProtocolError):  # from a full peer
        a.receive(frame, now)
    with pytest.raises(LocalProtocolError):
        a.watch_shard(MINE)  # a full node asks for no shard
    l1, l2 = light_link(SortedIndex()), light_link(SortedIndex())
    connect(l1, l2)
    with pytest.raises(RemoteProtocolError):  # to a light node
        l1.receive(frame, now)
    with pytest.raises(LocalProtocolError):
        l1.watch_shard(MINE)  # of a light peer
    half, light = full_link(MemoryStore(), (LOW,)), light_link(SortedIndex())
    connect(half, light)
    with pytest.raises(LocalProtocolError):
        light.watch_shard(MINE)  # the peer does not carry it
    with pytest.raises(g.ShardError):
        half.receive(frame, now)  # nor will it answer for it
    roomy = g.Budgets(watch_shard_burst=64)  # not throttled: counted
    full, light = full_link(MemoryStore(), budgets=roomy), light_link(SortedIndex())
    connect(full, light)
    for v in range(16):
        full.receive(light.watch_shard(prefix(v, 8)), now)
    with pytest.raises(LocalProtocolError):
        light.watch_shard(prefix(16, 8))
    with pytest.raises(RemoteProtocolError):  # a 17th prefix on one link
        full.receive(encode(WatchShard(prefix(16, 8))), now)


def test_prefixes_asked_while_a_session_runs_wait_their_turn():
    now = int(time.time())
    store = MemoryStore()
    a_env, b_env = env_in(0xA001, now), env_in(0x1001, now)
    store.add(a_env, now)
    store.add(b_env, now)
    full, light = full_link(store), light_link(SortedIndex())
    connect(full, light)
    _, first = full.receive(light.watch_shard(MINE), now)
    other = prefix(0, 3)
    assert full.receive(light.watch_shard(other), now) == [g.ShardWatched(other)]
    assert full.receive(light.watch_shard(other), now) == [g.ShardWatched(other)]  # once
    assert full.light_queue == [other]
    done, nxt = reconcile(full, light, first.frame, now)
    assert done.have == (a_env.id,) and full.light_queue == []
    (done2,) = reconcile(full, light, nxt.frame, now)
    assert done2.prefix == other and done2.have == (b_env.id,)


def test_watch_shard_is_charged_to_its_allowance():
    budgets = g.Budgets(watch_shard_rate=0.001, watch_shard_burst=4, drop_factor=1)
    full, light = full_link(MemoryStore(), budgets=budgets), light_link(SortedIndex())
    now = connect(full, light)
    frame = light.watch_shard(MINE)
    assert full.receive(frame, now) and full.receive(frame, now)  # half the burst
    assert full.receive(frame, now) == [] and full.throttled == 1
    for _ in range(3):
        full.receive(frame, now)  # owes 4
    with pytest.raises(g.FloodError):
        full.receive(frame, now)


def test_an_announcement_under_a_prefix_still_reaches_a_light_node_as_have():
    now = int(time.time())
    full, light = full_link(MemoryStore()), light_link(SortedIndex())
    connect(full, light)
    e = env_in(0xA0FF, now)
    (ev,) = light.receive(encode(Have((e.id,))), now)
    assert ev == g.Announced((e.id,))


def test_which_prefixes_a_light_node_asks_of_a_peer():
    key = 0xA1B2
    assert light_prefixes([key], EVERYTHING) == [ALL]  # the peer's depth: the largest set
    assert light_prefixes([key], EVERYTHING, depth=3) == [MINE]  # deeper: less to fetch
    assert light_prefixes([key], (HIGH,)) == [HIGH]
    assert light_prefixes([key], (LOW,)) == []  # it does not carry the key
    assert light_prefixes([key], (prefix(0b1010, 4),), depth=2) == [prefix(0b1010, 4)]
    assert light_prefixes([key, 0xA000, 0x0001], (LOW, HIGH), depth=1) == [LOW, HIGH]
    assert light_prefixes([key, 0xA000], EVERYTHING, depth=16) == [prefix(0xA000, 16),
                                                                  prefix(key, 16)]


def test_the_config_keys_and_option_of_a_light_node():
    from bridge.cli import build_parser
    from bridge.config import Config, ConfigError, check_run, parse
    assert not parse("").light and parse("").light_depth == 0
    cfg = parse("[p2p]\nlight = true\nlight_depth = 3")
    assert cfg.light and cfg.light_depth == 3
    check_run(cfg)
    for bad in ("light_depth = 17", "light_depth = -1", 'light_depth = "3"', 'light = "yes"'):
        with pytest.raises(ConfigError):
            parse(f"[p2p]\n{bad}")
    for full_only in ('shards = ["1/1"]', "carry_mb_day = 10"):
        with pytest.raises(ConfigError, match="light node"):
            check_run(parse(f"[p2p]\nlight = true\n{full_only}"))
    args = build_parser().parse_args(["run", "--light"])
    assert args.light and Config().override(light=True).light


def test_a_light_peer_that_let_a_session_stall_is_not_reconciled_with_again():
    now = int(time.time())
    store = MemoryStore()
    e = env_in(0xA001, now)
    store.add(e, now)
    full, light = full_link(store), light_link(SortedIndex())
    connect(full, light)
    evs = full.receive(light.watch_shard(MINE), now)
    assert isinstance(evs[1], g.Outgoing)  # the session starts: never answered
    assert full.abandon_stalled(now + 61, 60)
    assert full.receive(light.watch_shard(MINE), now + 62) == [g.ShardWatched(MINE)]
    assert full.peer_carries(0xA001)  # new envelopes still go to it
