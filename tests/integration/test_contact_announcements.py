"""Announcements to contacts over one shared in-process node whose public
announcements never arrive (as for a daemon that carries another part of the network
than its contact's): each accepted contact still learns the other's hybrid prekeys
and endpoint, from the announcement sealed to it in its own shard; a stranger's is
dropped; an older one replayed does not take back a newer one; nothing leaves when
nothing changed, and changes within the gap collapse into one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.core import tags
from bridge.core.address import decode_address
from bridge.core.envelope import Envelope, Kind, parse_envelope
from bridge.core.watch import Purpose, Watch
from bridge.events import MessageArrived
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import ContactRecord, Keystore
from tests.integration.test_service import Inbox
from tests.nodes import SharedNode
from tests.util import wait_until

BITS = 6
GAP = 1.0  # seconds between two announcements to one contact, shortened


class ShardedNode(SharedNode):
    """Drops every envelope under a public announcement tag of the identities it is
    told of: their contacts never see those, as a node carrying only the contact's
    shard never does."""

    def __init__(self) -> None:
        super().__init__(BITS)
        self.hidden: set[bytes] = set()
        self.dropped = 0

    def hide(self, address: str) -> None:
        pub = decode_address(address)
        for e in tags.watch_epochs(self.clock()):
            self.hidden |= {tags.announce_tag(pub, e), tags.announce_tag_v2(pub, e)}

    async def publish(self, raw: bytes) -> Envelope:
        env = parse_envelope(raw)
        if env.tag in self.hidden:
            self.dropped += 1
            return env
        return await super().publish(raw)

    def to_contact(self, address: str) -> list[Envelope]:
        """Announcements sealed to the identity ``address`` (under its address tag or
        a pair tag to it: in its shard), in the order they were published."""
        pub = decode_address(address)
        public = {tags.announce_tag_v2(pub, e) for e in tags.watch_epochs(self.clock())}
        return [e for e in self.store.values() if e.kind == Kind.ANNOUNCEMENT
                and e.version == 2 and e.tag[:2] == tags.shard_key(pub)
                and e.tag not in public]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(2)
    yield p
    p.close()


async def _service(tmp: Path, node: SharedNode, pool: WorkerPool, endpoint: str) -> Service:
    s = Service(Keystore(tmp), node, pool, base_bits=BITS)
    s.outbox.endpoint = endpoint
    await s.start()
    return s


def _contact(s: Service, owner: str, address: str) -> ContactRecord:
    c = s.book.find(s.ids.rec(owner), address)
    assert c is not None
    return c


async def test_contacts_learn_each_others_keys_without_the_public_announcements(
        tmp_path: Path, pool: WorkerPool) -> None:
    node = ShardedNode()
    a = await _service(tmp_path / "a", node, pool, "http://alice.example:45069")
    b = await _service(tmp_path / "b", node, pool, "http://bob.example:45069")
    try:
        # hidden before their first announcements can be published (no await between)
        alice = await a.create_identity("Alice")
        node.hide(alice.address)
        bob = await b.create_identity("Bob")
        node.hide(bob.address)
        b_in = Inbox(b)
        a.add_contact(alice.address, b.invite_link(bob.address))
        b.add_contact(bob.address, a.invite_link(alice.address))
        ab, ba = _contact(a, alice.address, bob.address), _contact(b, bob.address, alice.address)
        await wait_until(lambda: ab.hybrid_prekey and ba.hybrid_prekey, 20,
                         message="each learns the other's hybrid prekey")
        await wait_until(lambda: ab.endpoint and ba.endpoint, 20, message="and endpoint")
        assert ab.endpoint == "http://bob.example:45069"
        assert ba.endpoint == "http://alice.example:45069"
        # the public ones (both versions, both identities) were published and dropped
        await wait_until(lambda: node.dropped >= 4, 20, message="public ones dropped")
        assert a.announcer.taken >= 1 and b.announcer.taken >= 1
        assert a.errors.lines() == [] and b.errors.lines() == []

        # so Alice's first message starts a session: a version-2 envelope in Bob's shard
        env_id = await a.send_message(alice.address, bob.address, "hello in a session")
        sent = node.store[env_id]
        assert sent.version == 2 and sent.tag[:2] == tags.shard_key(decode_address(bob.address))
        msg = await b_in.wait(MessageArrived)
        assert msg.text == "hello in a session" and ba.sessions

        # announcing again with nothing changed sends no one anything
        before = len(node.to_contact(bob.address)), a.announcer.sent
        await a.outbox.announce(a.ids.rec(alice.address))
        assert (len(node.to_contact(bob.address)), a.announcer.sent) == before
    finally:
        await a.stop()
        await b.stop()


async def test_a_strangers_announcement_is_dropped(tmp_path: Path, pool: WorkerPool) -> None:
    node = ShardedNode()
    b = await _service(tmp_path / "b", node, pool, "")
    c = await _service(tmp_path / "c", node, pool, "http://carol.example:45069")
    try:
        bob, carol = await b.create_identity("Bob"), await c.create_identity("Carol")
        c.add_contact(carol.address, b.invite_link(bob.address))  # Bob does not know her
        await wait_until(lambda: b.announcer.refused, 20, message="Bob's daemon drops Carol's")
        assert c.announcer.sent == 1 and b.announcer.taken == 0
        assert b.contacts(bob.address) == []  # neither a contact nor a request
        assert b.errors.lines() == []  # dropped quietly: who adds us first sends one
    finally:
        await b.stop()
        await c.stop()


async def test_an_older_announcement_does_not_take_back_a_newer_one(
        tmp_path: Path, pool: WorkerPool) -> None:
    node = ShardedNode()
    a = await _service(tmp_path / "a", node, pool, "http://alice.example:1")
    b = await _service(tmp_path / "b", node, pool, "")
    a.announcer.min_gap = b.announcer.min_gap = GAP
    try:
        alice = await a.create_identity("Alice")
        node.hide(alice.address)  # before its first announcement is published
        bob = await b.create_identity("Bob")
        b.add_contact(bob.address, a.invite_link(alice.address))
        a.add_contact(alice.address, b.invite_link(bob.address))
        ba = _contact(b, bob.address, alice.address)
        await wait_until(lambda: ba.endpoint == "http://alice.example:1", 20, message="the first")
        # Bob's answer (his first went before Alice knew him) and Alice's answer to it
        await wait_until(lambda: a.announcer.idle and b.announcer.idle, 20, message="answers")
        first = node.to_contact(bob.address)[0]
        prekey = ba.hybrid_prekey

        # the endpoint changes three times within the gap: what leaves is at most one at
        # once and one when the gap is over, with the latest
        sent, t0 = a.announcer.sent, time.monotonic()
        for port in (2, 3, 4):
            a.outbox.endpoint = f"http://alice.example:{port}"
            await a.outbox.announce(a.ids.rec(alice.address))
        await wait_until(lambda: ba.endpoint == "http://alice.example:4", 20,
                         message="the latest endpoint")
        await wait_until(lambda: a.announcer.idle, 20, message="Alice's daemon done")
        assert 1 <= a.announcer.sent - sent <= 2
        if a.announcer.sent - sent == 2:
            assert time.monotonic() - t0 >= GAP * 0.9  # the second waited for the gap
        assert ba.hybrid_prekey == prekey

        # the first one again (as gossip might bring it late): the endpoint stays
        b.announcer.take(first, Watch(bob.address, Purpose.DIRECT))
        assert ba.endpoint == "http://alice.example:4" and ba.hybrid_prekey == prekey
    finally:
        await a.stop()
        await b.stop()
