"""Light nodes by shard on real nodes over loopback (docs/sharding.md, item 7): a light
node asks full nodes for its prefix, never a tag; it gets its envelopes (those held
before it linked, by reconciliation, and new ones as they come), reads and drops the
rest of its prefix, sees nothing outside it, sends through the full node, and after a
restart with its SQLite store gets what arrived while it was away."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from bridge.core import gossip as g
from bridge.core import shards
from bridge.core.gossip_wire import FrameType
from bridge.net.node import Node
from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import fast_config, has_all, linked, make_envelope, stop_all, wait_all
from tests.util import wait_until

KEY = 0xA1B2  # the light node's identity's shard key
MINE = shards.prefix(0b101, 3)  # what it asks for at depth 3


def in_shard(key: int, now: int, tag_tail: bytes | None = None):
    return make_envelope(now, tag=key.to_bytes(2, "big") + (tag_tail or os.urandom(14)))


def recording(node: Node, frames: list[bytes]) -> None:
    """Every frame ``node``'s links receive goes into ``frames`` too."""
    make = node.links.make_link

    def make_link():  # type: ignore[no-untyped-def]
        link = make()
        receive = link.receive

        def rec(frame: bytes, now: float, **kw):  # type: ignore[no-untyped-def]
            frames.append(bytes(frame))
            return receive(frame, now, **kw)
        link.receive = rec  # type: ignore[method-assign]
        return link
    node.links.make_link = make_link  # type: ignore[method-assign]


def light_ids(*ids: bytes) -> Callable[[Node], bool]:
    return lambda node: all(i in node.light for i in ids)


async def test_a_light_node_gets_its_own_and_the_full_node_learns_only_the_prefix():
    full = Node(fast_config())
    other_half = Node(fast_config(shards=(shards.prefix(0, 1),)))  # does not carry KEY
    heard: list[bytes] = []
    recording(full, heard)
    await full.start()
    await other_half.start()
    light: Node | None = None
    try:
        now = int(time.time())
        my_tags = {KEY.to_bytes(2, "big") + os.urandom(14) for _ in range(2)}
        t1, t2 = sorted(my_tags)
        mine_before = [in_shard(KEY, now, t1[2:]), in_shard(KEY, now, t2[2:])]
        neighbours = [in_shard(0xA000 + i, now) for i in range(5)]  # same prefix, not ours
        elsewhere = [in_shard(0x1000 + i * 0x400, now) for i in range(20)]
        for e in mine_before + neighbours + elsewhere:
            await full.publish(e.raw)
        light = Node(fast_config(light=True, light_depth=3, bootstrap=[
            f"127.0.0.1:{full.port}", f"127.0.0.1:{other_half.port}"]))
        await light.start()
        light.watch_shards([KEY], lambda tag: tag in my_tags)
        await wait_all([light], linked(2), 10)
        await wait_all([light], has_all({e.id for e in mine_before}), 10)
        await wait_all([light], light_ids(*(e.id for e in neighbours)), 10)
        assert len(light.store) == 2 and light.light.dropped == 5  # read, not kept
        assert not any(e.id in light.light for e in elsewhere)  # never offered

        # new envelopes under the prefix come as they are stored; others do not
        mine_new, neighbour_new = in_shard(KEY, now, t1[2:]), in_shard(0xB000, now)
        far = in_shard(0x2000, now)
        for e in (far, neighbour_new, mine_new):
            await full.publish(e.raw)
        await wait_all([light], has_all({mine_new.id}), 10)
        await wait_all([light], light_ids(neighbour_new.id), 10)
        assert far.id not in light.light and len(light.store) == 3

        # its own envelope (to someone in another shard) goes out through the full node
        sent = in_shard(0x0042, now)
        await light.publish(sent.raw)
        await wait_all([full], has_all({sent.id}), 10)

        # what the full nodes learned: the prefix, asked of the one that carries it
        (link,) = [c.link for c in full.active_conns() if c.link.peer and c.link.peer.light]
        assert link.peer_watch == (MINE,)
        (half,) = [c.link for c in other_half.active_conns()]
        assert half.peer_watch == ()  # it carries none of KEY: not asked
        kinds = {f[0] for f in heard}
        assert FrameType.WATCH_SHARD in kinds and FrameType.RECONCILE not in kinds
        for f in heard:
            assert not any(t in f for t in my_tags) or f[0] == FrameType.ENVELOPE
    finally:
        await stop_all([n for n in (full, other_half, light) if n is not None])


async def test_a_light_node_back_after_a_while_gets_what_arrived_meanwhile(tmp_path):
    full = Node(fast_config())
    await full.start()
    light: Node | None = None
    ids_file = tmp_path / "light-ids.bin"
    try:
        now = int(time.time())
        tag = KEY.to_bytes(2, "big") + os.urandom(14)

        def start_light() -> Node:
            return Node(fast_config(light=True, bootstrap=[f"127.0.0.1:{full.port}"],
                                    light_ids=str(ids_file)),
                        store=SQLiteStore(str(tmp_path / "envelopes.db")))

        light = start_light()
        await light.start()
        light.watch_shards([KEY], lambda t: t == tag)
        first = in_shard(KEY, now, tag[2:])
        seen = [in_shard(0x3000 + i, now) for i in range(5)]  # read and dropped
        for e in (first, *seen):
            await full.publish(e.raw)
        await wait_all([light], has_all({first.id}), 10)
        await wait_all([light], light_ids(*(e.id for e in seen)), 10)
        await light.stop()
        light.store.close()
        assert ids_file.stat().st_mode & 0o777 == 0o600
        assert ids_file.stat().st_size == 42 * 6  # shard key, expiry, id: kept and dropped

        away = [in_shard(KEY, now, tag[2:]) for _ in range(3)]
        noise = [in_shard(0x1000 + i, now) for i in range(10)]
        for e in away + noise:
            await full.publish(e.raw)

        light = start_light()
        await light.start()
        assert first.id in light.store and first.id in light.light  # kept across
        assert all(e.id in light.light for e in seen)  # the file: not fetched again
        light.watch_shards([KEY], lambda t: t == tag)
        await wait_all([light], has_all({e.id for e in away}), 10)
        # depth 0 (the full node's own): it read everything and kept its four
        await wait_all([light], light_ids(*(e.id for e in noise)), 10)
        assert len(light.store) == 4 and light.light.dropped == len(noise)
    finally:
        await stop_all([n for n in (full, light) if n is not None])
        if light is not None:
            light.store.close()


async def test_a_damaged_ids_file_is_ignored(tmp_path):
    bad = tmp_path / "light-ids.bin"
    bad.write_bytes(b"x" * 41)
    light = Node(fast_config(light=True, light_ids=str(bad)))
    await light.start()
    try:
        assert len(light.light.ids) == 0 and light.started
    finally:
        await stop_all([light])
    assert bad.stat().st_size == 0  # written again at the stop: nothing fetched


async def test_what_the_request_budget_leaves_out_is_asked_for_before_the_next_watch():
    full = Node(fast_config())
    await full.start()
    light: Node | None = None
    try:
        now = int(time.time())
        envs = [in_shard(KEY, now) for _ in range(60)]
        for e in envs:
            await full.publish(e.raw)
        # ten bodies at once, then ten a second: 60 take five seconds or so, well before
        # the next WATCH_SHARD (a minute): the backlog is drained as the budget refills
        small = g.Budgets(envelopes_burst=10, envelopes_rate=10)
        light = Node(fast_config(light=True, budgets=small,
                                 bootstrap=[f"127.0.0.1:{full.port}"]))
        await light.start()
        light.watch_shards([KEY], lambda t: True)
        await wait_all([light], has_all({e.id for e in envs}), 30)
        (link,) = [c.link for c in full.active_conns()]
        assert link.bytes_in < 10_000  # one WATCH_SHARD's session and WANTs, no re-asking
    finally:
        await stop_all([n for n in (full, light) if n is not None])


async def test_what_a_light_node_writes_without_a_link_leaves_when_one_comes(tmp_path):
    ids_file = tmp_path / "light-ids.bin"

    def light_node(*peers: str) -> Node:
        return Node(fast_config(light=True, light_ids=str(ids_file), bootstrap=list(peers)),
                    store=SQLiteStore(str(tmp_path / "envelopes.db")))

    full = Node(fast_config())
    light = light_node()
    await light.start()
    try:
        light.watch_shards([KEY], lambda t: False)
        now = int(time.time())
        before = in_shard(0x1234, now)  # to someone in another shard, with no link up
        await light.publish(before.raw)
        await light.stop()  # and it restarts before any link came
        light.store.close()
        assert (tmp_path / "light-own.bin").stat().st_size == 42

        await full.start()
        light = light_node(f"127.0.0.1:{full.port}")
        await light.start()
        assert before.id in light.light.own.ids  # read back
        light.watch_shards([KEY], lambda t: False)
        await wait_all([full], has_all({before.id}), 10)
        # taken by a full node: it has left, and is forgotten
        await wait_until(lambda: before.id not in light.light.own.ids, 10, 0.05,
                         "the light node forgetting what a full node took")
        after = in_shard(0x2345, now)  # with the link up: at once, as before
        await light.publish(after.raw)
        await wait_all([full], has_all({after.id}), 10)
    finally:
        await stop_all([full, light])
        light.store.close()
