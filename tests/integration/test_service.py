"""The service end to end over one shared in-process node: identities, contacts,
first-contact requests, messages both ways, receipts, rooms, persistence."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from bridge.core import crypto, tags
from bridge.core.address import decode_address
from bridge.core.envelope import Kind
from bridge.core.errors import BadInviteError, UserError
from bridge.core.records import RoomMessage
from bridge.events import (
    ChatStateArrived,
    ContactsChanged,
    ContactState,
    Event,
    MessageArrived,
    ReceiptArrived,
    RoomMessageArrived,
)
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore, WrongPassphraseError
from tests.nodes import SharedNode

BITS = 6


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    yield p
    p.close()


class Inbox:
    """A face that takes every event and, like the XMPP gateway once it has handed
    a message to a client, confirms chat messages as delivered (unless told not to)."""

    def __init__(self, service: Service, confirm: bool = True) -> None:
        self.events: list[Event] = []
        self._cond = asyncio.Condition()
        self._service = service
        self._confirm = confirm
        service.subscribe(self._on)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        if self._confirm and isinstance(event, MessageArrived):
            self._service.delivered(event.envelope_id)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait(self, kind: type, timeout: float = 10.0, **match: object) -> Event:
        async def find() -> Event:
            async with self._cond:
                while True:
                    for e in self.events:
                        if isinstance(e, kind) and all(getattr(e, k) == v
                                                       for k, v in match.items()):
                            self.events.remove(e)
                            return e
                    await self._cond.wait()
        return await asyncio.wait_for(find(), timeout)


async def _service(tmp: Path, node: SharedNode, pool: WorkerPool) -> Service:
    s = Service(Keystore(tmp), node, pool, base_bits=BITS)
    await s.start()
    return s


async def test_two_identities_talk(tmp_path: Path, pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    a = await _service(tmp_path / "a", node, pool)
    b = await _service(tmp_path / "b", node, pool)
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    a_in, b_in = Inbox(a), Inbox(b)

    # Alice adds Bob from his invitation link and writes first
    b_link = b.invite_link(bob.address)
    contact = a.add_contact(alice.address, b_link)
    assert contact.petname == "Bob" and contact.state is ContactState.ACCEPTED
    env_id = await a.send_message(alice.address, bob.address, "hello Bob", message_id="m1")

    # Bob does not know Alice: a contact request, the message held
    req = await b_in.wait(ContactsChanged)
    assert req.contact.state is ContactState.PENDING_IN and req.contact.address == alice.address
    assert b.held_messages(bob.address, alice.address) == 1
    b.accept_contact(bob.address, alice.address)
    msg = await b_in.wait(MessageArrived)
    assert (msg.text, msg.sender, msg.envelope_id, msg.message_id) == (
        "hello Bob", alice.address, env_id, "m1")

    # Bob's receipt and reply reach Alice (now over the pair tag and Alice's prekey)
    await b.send_receipt(bob.address, alice.address, [msg.envelope_id], [msg.message_id])
    rc = await a_in.wait(ReceiptArrived)
    assert rc.acked == (env_id,) and rc.message_ids == ("m1",)
    await b.send_message(bob.address, alice.address, "hi Alice ✓")
    reply = await a_in.wait(MessageArrived)
    assert reply.text == "hi Alice ✓" and reply.sender == bob.address
    # and Alice's next message goes over the pair tag to Bob's prekey
    await a.send_message(alice.address, bob.address, "second")
    assert (await b_in.wait(MessageArrived)).text == "second"
    # each envelope was delivered once, even when seen again
    for env in node.iter_stored():
        b.inbox.on_envelope(env)
    assert not [e for e in b_in.events if isinstance(e, MessageArrived)]


async def test_blocked_sender_is_silent(tmp_path: Path, pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    a = await _service(tmp_path / "a", node, pool)
    b = await _service(tmp_path / "b", node, pool)
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    b_in = Inbox(b)
    b.block_contact(bob.address, alice.address)
    await b_in.wait(ContactsChanged)
    await a.send_message(alice.address, bob.address, "spam")
    await a.send_message(alice.address, bob.address, "more spam")
    assert not [e for e in b_in.events if isinstance(e, MessageArrived | ContactsChanged)]


async def test_public_room(tmp_path: Path, pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    a = await _service(tmp_path / "a", node, pool)
    b = await _service(tmp_path / "b", node, pool)
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    b_in = Inbox(b)
    await a.send_room_message(alice.address, "public", "hello room")
    ev = await b_in.wait(RoomMessageArrived)
    assert (ev.to, ev.sender, ev.sender_nick, ev.text) == (
        bob.address, alice.address, "Alice", "hello room")
    with pytest.raises(UserError, match="no room"):
        await a.send_room_message(alice.address, "secret", "x")

    # A record naming another room, sealed under this room's key, is refused (envelope.md §9).
    room_pub = crypto.x25519_public(tags.room_secret("public"))
    forged = RoomMessage(a.clock() * 1000, "elsewhere", "Alice", "which room?")
    raw = a.outbox._sealed(a.ids.ident(a.ids.rec(alice.address)), recipient=room_pub,
                           kex=room_pub, kind=Kind.ROOM,
                           tag=tags.room_tag(room_pub, tags.epoch_of(a.clock())),
                           payload=forged.encode())
    await a.outbox._stamp_and_publish(raw)
    await a.send_room_message(alice.address, "public", "after the forgery")
    assert (await b_in.wait(RoomMessageArrived, text="after the forgery")).room == "public"
    assert not [e for e in b_in.events if isinstance(e, RoomMessageArrived)]
    assert any("names room 'elsewhere'" in line for line in b.errors.lines())


async def test_user_errors(tmp_path: Path, pool: WorkerPool) -> None:
    a = await _service(tmp_path, SharedNode(BITS), pool)
    alice = await a.create_identity("Alice")
    with pytest.raises(BadInviteError, match="checksum"):
        a.add_contact(alice.address, alice.address[:-1] + "a")
    with pytest.raises(UserError, match="own address"):
        a.add_contact(alice.address, alice.address)
    with pytest.raises(UserError, match="at most"):
        await a.send_message(alice.address, (await a.create_identity("B")).address, "x" * 70000)
    with pytest.raises(UserError, match="nickname"):
        await a.create_identity("   ")


async def test_keys_persist_encrypted_0600(tmp_path: Path, pool: WorkerPool) -> None:
    ks = Keystore(tmp_path / "d", "correct horse", kdf_ops=1, kdf_mem=8192 * 8)
    s = Service(ks, SharedNode(BITS), pool, base_bits=BITS)
    await s.start()
    alice = await s.create_identity("Alice")
    s.add_contact(alice.address, (await s.create_identity("Bob")).address, "bobby")
    path = tmp_path / "d" / "keys.pim"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    data = path.read_bytes()
    assert b"Alice" not in data and alice.address.encode() not in data
    with pytest.raises(WrongPassphraseError):
        Keystore(tmp_path / "d", "wrong").load()
    again = Service(Keystore(tmp_path / "d", "correct horse"), SharedNode(BITS), pool,
                    base_bits=BITS)
    await again.start()
    assert again.identities()[0].address == alice.address
    assert again.contacts(alice.address)[0].petname == "bobby"
    assert again.check_login(alice.username, alice.xmpp_password) is not None
    assert again.check_login(alice.username, "nope") is None
    assert again.check_login("nobody", alice.xmpp_password) is None
    await again.stop()
    await s.stop()


async def test_export_import(tmp_path: Path, pool: WorkerPool) -> None:
    a = await _service(tmp_path / "a", SharedNode(BITS), pool)
    b = await _service(tmp_path / "b", SharedNode(BITS), pool)
    alice = await a.create_identity("Alice")
    with pytest.raises(UserError, match="at least 8"):
        await a.export_identity(alice.address, "short")
    blob = await a.export_identity(alice.address, "a long passphrase")
    assert bytes.fromhex(a.keystore.doc.identities[0].seed) not in blob
    with pytest.raises(WrongPassphraseError):
        await b.import_identity(blob, "another passphrase")
    with pytest.raises(UserError, match="not a ParanoIM"):
        await b.import_identity(b"garbage", "a long passphrase")
    assert (await b.import_identity(blob, "a long passphrase")).address == alice.address
    # a crafted file asking for 4 GiB of key stretching is refused before any of it
    import struct
    greedy = blob[:22] + struct.pack(">IQ", 4, 4 * 1024**3) + blob[34:]
    with pytest.raises(UserError, match="out of range"):
        await b.import_identity(greedy, "a long passphrase")


async def test_vanity_identity(tmp_path: Path, pool: WorkerPool) -> None:
    s = await _service(tmp_path, SharedNode(BITS), pool)
    attempts, seconds = s.vanity_estimate("ab")
    assert attempts == 1024 and seconds < 5
    job = s.start_vanity("AB", "Vain")
    info = await asyncio.wait_for(job.wait(), 30)
    assert info.address.startswith("ab") and info.nick == "Vain"
    p = job.progress()
    assert p.done and p.attempts > 0 and p.address == info.address
    with pytest.raises(UserError, match="cannot appear"):
        s.start_vanity("a0", "x")
    os.sync()


async def test_each_message_shown_once_across_restarts(tmp_path: Path, pool: WorkerPool) -> None:
    """The node (a relay, or a persistent store) offers its envelopes again at each
    start: what was shown is not shown again (the key file remembers it), what was
    held as a request is held again."""
    node = SharedNode(BITS)
    a = await _service(tmp_path / "a", node, pool)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    await b.start()
    alice = await a.create_identity("Alice")
    carol = await a.create_identity("Carol")
    bob = await b.create_identity("Bob")
    b.add_contact(bob.address, alice.address, "alice")
    b_in = Inbox(b)
    await a.send_message(alice.address, bob.address, "shown")
    await b_in.wait(MessageArrived, text="shown")
    await a.send_message(carol.address, bob.address, "held")
    await b_in.wait(ContactsChanged, owner=bob.address)
    await b.stop()

    again = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    again_in = Inbox(again, confirm=False)
    await again.start()
    assert not [e for e in again_in.events if isinstance(e, MessageArrived)]
    assert again.held_messages(bob.address, carol.address) == 1
    again.accept_contact(bob.address, carol.address)
    assert (await again_in.wait(MessageArrived)).text == "held"
    await again.stop()

    # "held" was emitted but no face confirmed it reached a client: shown again
    third = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    third_in = Inbox(third)
    await third.start()
    assert [e.text for e in third_in.events if isinstance(e, MessageArrived)] == ["held"]


async def test_conversation_leaves_no_spurious_errors(tmp_path: Path, pool: WorkerPool) -> None:
    """Own envelopes echoed by the node and envelopes for a sibling identity on
    the same daemon are not reported as refused."""
    node = SharedNode(BITS)
    s = await _service(tmp_path, node, pool)
    alice = await s.create_identity("Alice")
    bob = await s.create_identity("Bob")
    inbox = Inbox(s)
    s.add_contact(alice.address, bob.address)
    s.add_contact(bob.address, alice.address)
    for i in range(3):
        await s.send_message(alice.address, bob.address, f"a{i}")
        await inbox.wait(MessageArrived, text=f"a{i}", to=bob.address)
        await s.send_message(bob.address, alice.address, f"b{i}")
        await inbox.wait(MessageArrived, text=f"b{i}", to=alice.address)
    assert not [e for e in s.health().recent_errors if "refused" in e]


@pytest.mark.parametrize(("nick", "username"), [
    ("Zoë Test", "zoe.test"), ("Ålice", "alice"), ("李雷", "me"), ("admin", "admin2"),
])
async def test_usernames_are_jid_safe(tmp_path: Path, pool: WorkerPool, nick: str,
                                      username: str) -> None:
    s = await _service(tmp_path, SharedNode(BITS), pool)
    assert (await s.create_identity(nick)).username == username


async def test_maintenance_follows_epochs_and_rotates_prekeys(tmp_path: Path,
                                                             pool: WorkerPool) -> None:
    """A daemon running for days watches each new epoch's tags, rotates its
    prekeys, deletes expired prekey secrets and announces again."""
    from bridge.core import tags
    from bridge.core.checks import MAX_TTL
    from bridge.core.identity import PREKEY_LIFETIME

    now = [1_800_000_000 - 1_800_000_000 % tags.EPOCH + 100]
    clock = lambda: now[0]  # noqa: E731
    node = SharedNode(BITS, clock)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS, clock=clock)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS, clock=clock)
    await a.start()
    await b.start()
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    b.add_contact(bob.address, alice.address)
    b_in = Inbox(b)
    first_prekeys = [p.secret for p in b.keystore.doc.identities[0].prekeys]

    now[0] += 2 * tags.EPOCH  # two days later: tags of an epoch not watched before
    await a.send_message(alice.address, bob.address, "missed without upkeep")
    await asyncio.sleep(0)
    assert not [e for e in b_in.events if isinstance(e, MessageArrived)]
    await b.maintain()
    # the envelope is still in the network: the node replays it after the rebuild
    for env in node.iter_stored():
        b.inbox.on_envelope(env)
    assert (await b_in.wait(MessageArrived)).text == "missed without upkeep"

    now[0] += PREKEY_LIFETIME  # the first prekey is past half its life: a new one
    announcements_before = len(node.store)
    await b.maintain()
    rec = b.keystore.doc.identities[0]
    assert len(rec.prekeys) == 2 and rec.prekeys[0].secret == first_prekeys[0]
    await asyncio.wait_for(_until(lambda: len(node.store) > announcements_before), 10)

    now[0] += MAX_TTL + 1  # nothing sealed to the first prekey can be alive: delete it
    await b.maintain()
    assert first_prekeys[0] not in [p.secret for p in b.keystore.doc.identities[0].prekeys]
    await a.stop()
    await b.stop()


async def _until(pred) -> None:
    while not pred():
        await asyncio.sleep(0.01)


async def test_older_announcement_does_not_replace_newer_endpoint(tmp_path: Path,
                                                                  pool: WorkerPool) -> None:
    now = [int(__import__("time").time())]
    clock = lambda: now[0]  # noqa: E731
    node_a, node_b = SharedNode(BITS, clock), SharedNode(BITS, clock)
    a = Service(Keystore(tmp_path / "a"), node_a, pool, base_bits=BITS, clock=clock)
    b = Service(Keystore(tmp_path / "b"), node_b, pool, base_bits=BITS, clock=clock)
    await a.start()
    await b.start()
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address)
    rec = b.keystore.doc.identities[0]
    b.outbox.endpoint = "http://old.example:45069"
    await b.outbox.announce(rec)
    old = list(node_b.store.values())
    now[0] += 60
    b.outbox.endpoint = "http://new.example:45069"
    await b.outbox.announce(rec)
    new = [e for e in node_b.store.values() if e not in old]
    for env in new + old:  # the newer one arrives first
        a.inbox.on_envelope(env)
    c = a.book.find(a.ids.rec(alice.address), bob.address)
    assert c is not None and c.endpoint == "http://new.example:45069"


@pytest.mark.parametrize("sessions", [False, True])
async def test_every_envelope_lies_in_its_recipients_shard(tmp_path: Path, pool: WorkerPool,
                                                          sessions: bool) -> None:
    """Whatever leaves — a first message, a receipt, messages over the pair tag, a chat
    state, a room message, version 1 or 2 — is tagged in the shard of whoever opens it,
    so a node carrying a part of the network receives all that is sent to its identities
    (docs/sharding.md); a version-1 envelope under a contact's pair tag to us opens."""
    node = SharedNode(BITS)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS, sessions=sessions,
                chat_states=True)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS, sessions=sessions,
                chat_states=True)
    await a.start()
    await b.start()
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    a_in, b_in = Inbox(a), Inbox(b)
    b.add_contact(bob.address, a.invite_link(alice.address))
    a.add_contact(alice.address, b.invite_link(bob.address))
    await a.send_message(alice.address, bob.address, "one", message_id="m1")
    got = await b_in.wait(MessageArrived, text="one")
    await b.send_receipt(bob.address, alice.address, [got.envelope_id], ["m1"])
    await a_in.wait(ReceiptArrived)
    await b.send_message(bob.address, alice.address, "two")
    await a_in.wait(MessageArrived, text="two")
    await a.send_message(alice.address, bob.address, "three")
    await b_in.wait(MessageArrived, text="three")
    await a.send_room_message(alice.address, "public", "room")
    await b_in.wait(RoomMessageArrived, text="room")

    assert await a.send_chat_state(alice.address, bob.address, "composing")
    await b_in.wait(ChatStateArrived)
    shard = {tags.shard_key(decode_address(x.address)) for x in (alice, bob)}
    room_shard = tags.shard_key(crypto.x25519_public(tags.room_secret("public")))
    kinds: set[Kind] = set()
    for env in node.iter_stored():
        kinds.add(env.kind)
        key = env.tag[:2]
        if env.kind is Kind.ROOM:
            assert key == room_shard
        else:
            assert key in shard, (env.kind, env.version)
    assert {Kind.DIRECT, Kind.RECEIPT, Kind.ROOM, Kind.ANNOUNCEMENT} <= kinds
