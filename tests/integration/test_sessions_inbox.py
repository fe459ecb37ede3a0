"""Version-2 envelopes through the service's inbox: a hybrid announcement teaches a
contact's keys, a conversation runs in a session (handshake under the address tag,
then pair tags), a stranger's session waits in RAM with its request, and a restart
shows nothing twice (bridge/inbox.py, bridge/sessionbook.py)."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.core import crypto, tags
from bridge.core.body import handshake_of, seal_sealed, sealed_bucket
from bridge.core.checks import check_envelope
from bridge.core.envelope import Kind
from bridge.core.errors import UserError
from bridge.core.records import DirectMessage, HybridAnnouncement, Receipt
from bridge.core.stamp import Stamp
from bridge.events import (
    ContactsChanged,
    IdentityInfo,
    MessageArrived,
    ReceiptArrived,
    SessionNotice,
)
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.integration.test_service import Inbox
from tests.nodes import SharedNode
from tests.stamp_support import mint_stamp
from tests.util import wait_until

BITS = 2
async def _stamp(bucket: int) -> Stamp:
    return mint_stamp(bucket, now=int(time.time()), bits=BITS)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[tuple[Path, WorkerPool, SharedNode]]:
    pool = WorkerPool(1)
    yield tmp_path, pool, SharedNode(BITS)
    pool.close()


async def _service(root: Path, pool: WorkerPool, node: SharedNode, name: str) -> Service:
    s = Service(Keystore(root / name), node, pool, base_bits=BITS)
    await s.start()
    return s


async def _announce(s: Service, node: SharedNode, owner: str) -> None:
    """Publish ``owner``'s version-2 announcement (its hybrid prekeys)."""
    rec = s.ids.rec(owner)
    me = s.ids.ident(rec)
    ann = HybridAnnouncement(int(time.time()), s.ids.live_hybrid_prekeys(rec), "x", "")
    payload = ann.encode()
    secret = tags.announce_secret(me.public)
    await node.publish(seal_sealed(
        sender=me, recipient=me.public, kex_public=crypto.x25519_public(secret),
        kind=Kind.ANNOUNCEMENT, tag=tags.announce_tag(me.public, tags.epoch_of(int(time.time()))),
        stamp=await _stamp(sealed_bucket(len(payload))), payload=payload,
        ephemeral_secret=crypto.hash32(me.public + b"eph")))


async def _contacts(net: tuple[Path, WorkerPool, SharedNode]
                    ) -> tuple[Service, Service, IdentityInfo, IdentityInfo, Inbox, Inbox]:
    """Alice on service a and Bob on b, contacts of each other, each knowing the
    other's hybrid prekeys; a face on each that confirms what it is shown."""
    root, pool, node = net
    a, b = await _service(root, pool, node, "a"), await _service(root, pool, node, "b")
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address, "bob")
    b.add_contact(bob.address, alice.address, "alice")
    a_in, b_in = Inbox(a), Inbox(b)
    await _announce(b, node, bob.address)
    await _announce(a, node, alice.address)
    return a, b, alice, bob, a_in, b_in


async def _say(s: Service, node: SharedNode, owner: str, to: str, record: DirectMessage | Receipt,
               kind: Kind = Kind.DIRECT) -> None:
    """Send ``record`` to ``to`` in a session, the way the outbox will."""
    raw = await s.sessions.seal(owner, to, kind, record.encode(), _stamp)
    await node.publish(raw)


async def test_a_conversation_in_sessions_through_the_inbox(net) -> None:  # type: ignore[no-untyped-def]
    root, pool, node = net
    a, b = await _service(root, pool, node, "a"), await _service(root, pool, node, "b")
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address, "bob")
    b.add_contact(bob.address, alice.address, "alice")
    a_in, b_in = Inbox(a), Inbox(b)
    await _announce(b, node, bob.address)
    assert a.book.need(alice.address, bob.address).hybrid_prekey, "Bob's keys learnt"

    now_ms = int(time.time() * 1000)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms, "hello Bob", True, "m1"))
    got = await b_in.wait(MessageArrived, text="hello Bob")
    assert (got.sender, got.message_id, got.receipt_wanted) == (alice.address, "m1", True)
    assert b.book.need(bob.address, alice.address).sessions, "Bob's session is in his key file"
    await _say(b, node, bob.address, alice.address, Receipt(((got.envelope_id, "m1"),)),
               Kind.RECEIPT)
    receipt = await a_in.wait(ReceiptArrived)
    assert receipt.acked == (got.envelope_id,)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 1, "and more"))
    assert (await b_in.wait(MessageArrived, text="and more")).sender == alice.address
    await b.stop()

    again = await _service(root, pool, node, "b")  # the node offers everything again
    again_in = Inbox(again)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 2, "after restart"))
    await again_in.wait(MessageArrived, text="after restart")
    assert [e.text for e in again_in.events if isinstance(e, MessageArrived)] == []
    assert again.health().recent_errors == []
    await again.stop()
    await a.stop()


async def test_a_message_no_client_took_comes_again_once_after_a_restart(net) -> None:  # type: ignore[no-untyped-def]
    """Its key is used, but kept in the session until a client has the message: after
    a restart the network's copy opens once more and is shown; once a client took
    it, the key is gone and a replay opens nothing."""
    root, pool, node = net
    a, b = await _service(root, pool, node, "a"), await _service(root, pool, node, "b")
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address, "bob")
    b.add_contact(bob.address, alice.address, "alice")
    b_in = Inbox(b, confirm=False)  # Bob's client is not connected
    await _announce(b, node, bob.address)
    now_ms = int(time.time() * 1000)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms, "while away"))
    await b_in.wait(MessageArrived, text="while away")
    assert b.sessions.held() == 1
    await b.stop()

    again = await _service(root, pool, node, "b")  # the node offers it again
    again_in = Inbox(again)  # this time a client takes it
    shown = await again_in.wait(MessageArrived, text="while away")
    assert shown.sender == alice.address and again.sessions.held() == 0
    session = again.sessions.peer(bob.address, alice.address).active
    assert session is not None and session.stored_keys == 0, "the key went with delivery"
    await again.stop()

    third = await _service(root, pool, node, "b")
    third_in = Inbox(third)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 1, "next"))
    await third_in.wait(MessageArrived, text="next")
    assert [e.text for e in third_in.events if isinstance(e, MessageArrived)] == []
    assert third.health().recent_errors == []
    await third.stop()
    await a.stop()


async def test_a_new_session_is_told_to_the_contact(net) -> None:  # type: ignore[no-untyped-def]
    root, pool, node = net
    a, b = await _service(root, pool, node, "a"), await _service(root, pool, node, "b")
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address, "bob")
    with pytest.raises(UserError, match="keys"):  # Bob's hybrid prekey is not known yet
        a.new_session(alice.address, bob.address)
    b.add_contact(bob.address, alice.address, "alice")
    a_in, b_in = Inbox(a), Inbox(b)
    await _announce(b, node, bob.address)
    await _announce(a, node, alice.address)
    now_ms = int(time.time() * 1000)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms, "first"))
    await b_in.wait(MessageArrived, text="first")
    await _say(b, node, bob.address, alice.address, DirectMessage(now_ms + 1, "reply"))
    await a_in.wait(MessageArrived, text="reply")
    assert "since" in a.contacts(alice.address)[0].session

    a.new_session(alice.address, bob.address)
    notice = await b_in.wait(SessionNotice)
    assert isinstance(notice, SessionNotice) and notice.sender == alice.address
    assert "alice started a new end-to-end session" in notice.text
    assert b.contacts(bob.address)[0].session_note == notice.text
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 2, "new one"))
    await b_in.wait(MessageArrived, text="new one")
    assert a.health().recent_errors == [] and b.health().recent_errors == []
    await a.stop()
    await b.stop()


async def test_a_daemon_restored_from_an_older_key_file_starts_a_new_session(net) -> None:  # type: ignore[no-untyped-def]
    """Bob's key file is put back to a copy from before his session with Alice: her
    next message, under the pair tag to him, opens in none of his sessions. His
    daemon starts a new one (once), both are told, and both end on one session.
    (Bob's copy also answers the old handshake it opens again, from a state Alice
    has moved past: she may find that unreadable and start over too; the two
    restarts cross, and the simultaneous-start rule settles them alike on both sides.)"""
    root, pool, node = net
    a, b, alice, bob, a_in, b_in = await _contacts(net)
    await b.ids.flush()
    shutil.copytree(root / "b", root / "b-old")  # the copy, before any session
    now_ms = int(time.time() * 1000)
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms, "first"))
    await b_in.wait(MessageArrived, text="first")
    await _say(b, node, bob.address, alice.address, DirectMessage(now_ms + 1, "reply"))
    await a_in.wait(MessageArrived, text="reply")
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 2, "second"))
    await b_in.wait(MessageArrived, text="second")
    await b.stop()

    old = await _service(root, pool, node, "b-old")  # everything is offered again
    old_in = Inbox(old)
    mine = await old_in.wait(SessionNotice)
    assert isinstance(mine, SessionNotice) and mine.sender == alice.address
    assert "could not be opened" in mine.text and "A new session was started" in mine.text
    theirs = await a_in.wait(SessionNotice)
    assert isinstance(theirs, SessionNotice) and theirs.sender == bob.address
    assert "bob started a new" in theirs.text or "could not be opened" in theirs.text
    await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 3, "after"))
    await old_in.wait(MessageArrived, text="after")
    await _say(old, node, bob.address, alice.address, DirectMessage(now_ms + 4, "back"))
    await a_in.wait(MessageArrived, text="back")
    ours = a.sessions.peer(alice.address, bob.address).active
    his = old.sessions.peer(bob.address, alice.address).active
    assert ours is not None and his is not None and ours.session_id == his.session_id
    notices = [e for e in old_in.events if isinstance(e, SessionNotice)
               and "could not be opened" in e.text]
    assert notices == [], "one new session, however many old messages fail"
    await old.stop()
    await a.stop()


async def test_both_writing_first_at_once_converge_on_one_session(net) -> None:  # type: ignore[no-untyped-def]
    """Alice and Bob each start a session before either hears from the other: both
    messages open, and afterwards both send in the same session."""
    node = net[2]
    a, b, alice, bob, a_in, b_in = await _contacts(net)
    now_ms = int(time.time() * 1000)
    # both sealed before either is published: two sessions, started at once
    to_bob = await a.sessions.seal(alice.address, bob.address, Kind.DIRECT,
                                   DirectMessage(now_ms, "hi Bob").encode(), _stamp)
    to_alice = await b.sessions.seal(bob.address, alice.address, Kind.DIRECT,
                                     DirectMessage(now_ms, "hi Alice").encode(), _stamp)
    await node.publish(to_bob)
    await node.publish(to_alice)
    await b_in.wait(MessageArrived, text="hi Bob")
    await a_in.wait(MessageArrived, text="hi Alice")
    for n in range(3):  # a few turns: each in whichever session its side now holds active
        await _say(a, node, alice.address, bob.address, DirectMessage(now_ms + 1 + n, f"a{n}"))
        await b_in.wait(MessageArrived, text=f"a{n}")
        await _say(b, node, bob.address, alice.address, DirectMessage(now_ms + 1 + n, f"b{n}"))
        await a_in.wait(MessageArrived, text=f"b{n}")
    ours = a.sessions.peer(alice.address, bob.address).active
    theirs = b.sessions.peer(bob.address, alice.address).active
    assert ours is not None and theirs is not None
    assert ours.session_id == theirs.session_id, "one session on both sides"
    assert not [e for e in (*a_in.events, *b_in.events) if isinstance(e, SessionNotice)]
    await a.stop()
    await b.stop()


async def test_a_new_session_is_answered_at_once_so_the_next_messages_are_small(net) -> None:  # type: ignore[no-untyped-def]
    """Bob's daemon answers Alice's new session with a text-free message (not shown):
    her next messages drop the 1,194-byte handshake block before Bob writes a word."""
    node = net[2]
    a, b, alice, bob, a_in, b_in = await _contacts(net)
    now_ms = int(time.time() * 1000)
    first = await a.sessions.seal(alice.address, bob.address, Kind.DIRECT,
                                  DirectMessage(now_ms, "first").encode(), _stamp)
    assert handshake_of(check_envelope(first, now=int(time.time()), base_bits=BITS))
    await node.publish(first)
    await b_in.wait(MessageArrived, text="first")

    def confirmed() -> bool:
        active = a.sessions.peer(alice.address, bob.address).active
        return active is not None and active.confirmed

    await wait_until(confirmed, 10, message="Alice's session confirmed by Bob's daemon")
    second = await a.sessions.seal(alice.address, bob.address, Kind.DIRECT,
                                   DirectMessage(now_ms + 1, "second").encode(), _stamp)
    env = check_envelope(second, now=int(time.time()), base_bits=BITS)
    assert handshake_of(env) is None and env.size < len(first) // 4
    await node.publish(second)
    await b_in.wait(MessageArrived, text="second")
    assert not [e for e in a_in.events if isinstance(e, MessageArrived)], "nothing shown"
    await a.stop()
    await b.stop()


async def test_adding_a_contact_opens_the_announcement_the_node_already_holds(net) -> None:  # type: ignore[no-untyped-def]
    """Bob's announcement reached Alice's node before she added him: adding him opens
    it at once, so her first message starts a session instead of going version 1."""
    root, pool, node = net
    a, b = await _service(root, pool, node, "a"), await _service(root, pool, node, "b")
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    await _announce(b, node, bob.address)
    a.add_contact(alice.address, bob.address, "bob")
    assert a.book.need(alice.address, bob.address).hybrid_prekey, "known from the stored one"
    assert "your next message starts a post-quantum session" in \
        a.contacts(alice.address)[0].session
    await a.stop()
    await b.stop()


async def test_a_strangers_session_waits_with_the_request(net) -> None:  # type: ignore[no-untyped-def]
    root, pool, node = net
    b, c = await _service(root, pool, node, "b"), await _service(root, pool, node, "c")
    bob, carol = await b.create_identity("Bob"), await c.create_identity("Carol")
    c.add_contact(carol.address, bob.address, "bob")
    b_in = Inbox(b)
    await _announce(b, node, bob.address)
    await _say(c, node, carol.address, bob.address,
               DirectMessage(int(time.time() * 1000), "hello, stranger"))
    await b_in.wait(ContactsChanged, owner=bob.address)
    assert not [e for e in b_in.events if isinstance(e, MessageArrived)]
    assert b.ids.rec(bob.address).contacts == [], "nothing of Carol in Bob's key file"
    b.accept_contact(bob.address, carol.address)
    assert (await b_in.wait(MessageArrived)).text == "hello, stranger"
    assert b.book.need(bob.address, carol.address).sessions, "kept once accepted"
    c_in = Inbox(c)
    await _say(b, node, bob.address, carol.address,
               DirectMessage(int(time.time() * 1000), "welcome"))
    assert (await c_in.wait(MessageArrived)).text == "welcome"
    await b.stop()
    await c.stop()


async def test_the_outbox_sends_in_sessions_once_it_knows_the_contacts_keys(
        net) -> None:  # type: ignore[no-untyped-def]
    """With sessions on, announcements carry hybrid prekeys and messages, receipts and
    replies go in version-2 envelopes with pool stamps; a contact whose keys are not
    known yet still gets version 1."""
    root, pool, node = net
    a = Service(Keystore(root / "a"), node, pool, base_bits=BITS, sessions=True)
    b = Service(Keystore(root / "b"), node, pool, base_bits=BITS, sessions=True)
    await a.start()
    await b.start()
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    a_in, b_in = Inbox(a), Inbox(b)
    a.add_contact(alice.address, bob.address, "bob")
    b.add_contact(bob.address, alice.address, "alice")
    first = await a.send_message(alice.address, bob.address, "before the keys")
    assert len(first) == 32
    got = await b_in.wait(MessageArrived, text="before the keys")
    assert not a.book.need(alice.address, bob.address).sessions  # version 1 still

    await b.outbox.announce(b.ids.rec(bob.address))  # Bob's hybrid prekeys reach Alice
    assert a.book.need(alice.address, bob.address).hybrid_prekey
    await a.send_message(alice.address, bob.address, "in a session", message_id="s1")
    got = await b_in.wait(MessageArrived, text="in a session")
    assert got.message_id == "s1"
    assert a.book.need(alice.address, bob.address).sessions
    assert b.book.need(bob.address, alice.address).sessions
    await b.send_receipt(bob.address, alice.address, [got.envelope_id], ["s1"])
    assert (await a_in.wait(ReceiptArrived)).acked == (got.envelope_id,)
    await b.send_message(bob.address, alice.address, "answered in the session")
    await a_in.wait(MessageArrived, text="answered in the session")
    assert sum(a.outbox.stamps.ready().values()) > 0 or a.outbox.minter.refilling
    assert a.health().recent_errors == [] and b.health().recent_errors == []
    await a.stop()
    await b.stop()


async def test_strangers_writing_leave_nothing_in_the_session_notes(net) -> None:  # type: ignore[no-untyped-def]
    """What the notes remember per contact (the latest expiry opened) is never kept for
    a stranger: each stranger's first message would otherwise grow it by one entry."""
    root, pool, node = net
    b = await _service(root, pool, node, "b")
    bob = await b.create_identity("Bob")
    b_in = Inbox(b)
    await _announce(b, node, bob.address)
    for n in range(3):
        s = await _service(root, pool, node, f"s{n}")
        me = await s.create_identity(f"Stranger {n}")
        s.add_contact(me.address, bob.address, "bob")
        await _say(s, node, me.address, bob.address, DirectMessage(int(time.time() * 1000), "hi"))
        await s.stop()
    await wait_until(lambda: len(b.contacts(bob.address)) == 3, 10, message="three requests")
    assert b.inbox.notes._heard == {}
    assert not [e for e in b_in.events if isinstance(e, MessageArrived)]
    await b.stop()
