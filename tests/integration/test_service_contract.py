"""One contract, two implementations: what the faces rely on from ``ServiceAPI``,
run against the real ``Service`` (over an in-process ``LocalNode``) and against
``tests.fakes.FakeService``, which the XMPP tests use in its place. A behaviour the
fake gets wrong here would make a gateway test pass against something the daemon
never does.

Identities of one service talk to each other through its node (the fake loops them
back itself), so arrivals, contact requests and blocking are seen from both ends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bridge.api import ServiceAPI
from bridge.core.address import decode_address, fingerprint
from bridge.core.archive import Query
from bridge.core.errors import UserError
from bridge.events import (
    ContactInfo,
    ContactsChanged,
    ContactState,
    Event,
    GroupChanged,
    IdentitiesChanged,
    MessageArrived,
    NodeHealth,
    ReceiptArrived,
)
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.fakes import NO_KEYS, FakeService, make_address

BITS = 6  # proof of work in microseconds
E = TypeVar("E")
MakeService = Callable[..., Awaitable[ServiceAPI]]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture(params=["fake", "real"])
async def make(request: pytest.FixtureRequest, tmp_path: Path,
               pool: WorkerPool) -> AsyncIterator[MakeService]:
    started: list[Service] = []

    async def build(*, chat_states: bool = False) -> ServiceAPI:
        if request.param == "fake":
            return FakeService(chat_states=chat_states)
        real = Service(Keystore(tmp_path / f"keys{len(started)}"), LocalNode(BITS), pool,
                       base_bits=BITS, chat_states=chat_states)
        await real.start()
        started.append(real)
        return real

    yield build
    for real in started:
        await real.stop()


@pytest.fixture
async def service(make: MakeService) -> ServiceAPI:
    return await make()


class Events:
    """Everything a service emits, in order; a test takes the events it expects."""

    def __init__(self, service: ServiceAPI) -> None:
        self.seen: list[Event] = []
        self._tick = asyncio.Event()
        self.unsubscribe = service.subscribe(self._on)

    def _on(self, event: Event) -> None:
        self.seen.append(event)
        self._tick.set()

    async def take(self, kind: type[E], timeout: float = 10.0, **match: object) -> E:
        """The oldest event of ``kind`` whose fields equal ``match``, waiting for it."""
        async def find() -> E:
            while True:
                for event in self.seen:
                    if isinstance(event, kind) and all(
                            getattr(event, k) == v for k, v in match.items()):
                        self.seen.remove(event)
                        return event
                self._tick.clear()
                await self._tick.wait()

        return await asyncio.wait_for(find(), timeout)

    def left(self, kind: type[E]) -> list[E]:
        return [e for e in self.seen if isinstance(e, kind)]


def contact_of(service: ServiceAPI, owner: str, address: str) -> ContactInfo | None:
    return next((c for c in service.contacts(owner) if c.address == address), None)


# --- identities ------------------------------------------------------------------------


async def test_create_rename_and_delete_an_identity(service: ServiceAPI) -> None:
    events = Events(service)
    alice = await service.create_identity("Alice  Liddell ")
    await events.take(IdentitiesChanged, identity=alice)
    assert alice.nick == "Alice Liddell"  # spaces collapsed, as typed names are
    assert len(decode_address(alice.address)) == 32
    assert alice.username and alice.username == alice.username.lower()
    assert alice.xmpp_password
    assert service.identities() == [alice] and service.identity(alice.address) == alice

    twin = await service.create_identity("Alice Liddell")
    await events.take(IdentitiesChanged)
    assert twin.username != alice.username and twin.address != alice.address

    renamed = service.rename_identity(alice.address, "Ally")
    await events.take(IdentitiesChanged, identity=renamed)
    assert renamed == service.identity(alice.address)
    assert (renamed.nick, renamed.username, renamed.address) == (
        "Ally", alice.username, alice.address)
    with pytest.raises(UserError):
        service.rename_identity(alice.address, "   ")
    with pytest.raises(UserError):
        await service.create_identity("")

    service.delete_identity(twin.address)
    await events.take(IdentitiesChanged, removed=twin.address, identity=None)
    assert [i.address for i in service.identities()] == [alice.address]
    with pytest.raises(UserError):
        service.identity(twin.address)
    with pytest.raises(UserError):
        service.delete_identity(twin.address)
    assert service.identity_by_username(twin.username) is None
    assert service.check_login(twin.username, twin.xmpp_password) is None
    assert not events.left(IdentitiesChanged)  # one event per change, no more


async def test_client_storage_is_per_identity_bounded_and_goes_with_it(
        service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='public@rooms'/></storage>"
    service.set_client_storage(alice.address, {"{storage:bookmarks}storage": bookmarks})
    service.set_client_storage(alice.address, {"{storage:rosternotes}storage": "<x/>"})
    assert service.client_storage(alice.address) == {
        "{storage:bookmarks}storage": bookmarks, "{storage:rosternotes}storage": "<x/>"}
    assert service.client_storage(bob.address) == {}
    with pytest.raises(UserError):  # past the bound: refused whole, nothing changed
        service.set_client_storage(alice.address, {"{big}x": "y" * 70_000})
    with pytest.raises(UserError):
        service.set_client_storage(alice.address, {f"{{n{i}}}x": "<x/>" for i in range(40)})
    assert len(service.client_storage(alice.address)) == 2
    service.delete_identity(alice.address)
    with pytest.raises(UserError):
        service.client_storage(alice.address)


async def test_pep_nodes_are_per_identity_bounded_and_go_with_it(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    service.set_pep_node(alice.address, "urn:xmpp:bookmarks:1", '{"items": []}')
    service.set_pep_node(alice.address, "urn:xmpp:avatar:data", '{"items": [1]}')
    service.set_pep_node(alice.address, "urn:xmpp:avatar:data", None)  # deleted
    assert service.pep_nodes(alice.address) == {"urn:xmpp:bookmarks:1": '{"items": []}'}
    assert service.pep_nodes(bob.address) == {}
    with pytest.raises(UserError):  # past the bound in bytes: refused, nothing changed
        service.set_pep_node(alice.address, "big", "y" * 300_000)
    with pytest.raises(UserError):  # past the bound in nodes
        for i in range(40):
            service.set_pep_node(alice.address, f"n{i}", "{}")
    assert "big" not in service.pep_nodes(alice.address)
    service.delete_identity(alice.address)
    with pytest.raises(UserError):
        service.pep_nodes(alice.address)


async def test_login_by_username_and_password(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    assert service.identity_by_username(alice.username) == alice
    assert service.identity_by_username(alice.username.upper()) == alice  # JIDs ignore case
    assert service.identity_by_username("nobody") is None
    assert service.check_login(alice.username, alice.xmpp_password) == alice
    assert service.check_login(alice.username, bob.xmpp_password) is None
    assert service.check_login(alice.username, alice.xmpp_password + "x") is None
    assert service.check_login(alice.username, "") is None
    assert service.check_login("nobody", alice.xmpp_password) is None


# --- contacts ---------------------------------------------------------------------------


async def test_add_accept_block_and_remove_a_contact(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = make_address(b"contract-bob")  # somebody elsewhere on the network
    events = Events(service)

    added = service.add_contact(alice.address, bob, " Bob  B ")
    assert added == ContactInfo(alice.address, bob, "Bob B", ContactState.ACCEPTED,
                                fingerprint(decode_address(bob)), NO_KEYS)
    assert await events.take(ContactsChanged) == ContactsChanged(alice.address, contact=added)
    assert service.contacts(alice.address) == [added]

    blocked = service.block_contact(alice.address, bob)
    assert (blocked.state, blocked.petname) == (ContactState.BLOCKED, "Bob B")
    assert await events.take(ContactsChanged) == ContactsChanged(alice.address, contact=blocked)
    assert service.contacts(alice.address) == [blocked]

    accepted = service.accept_contact(alice.address, bob)
    assert accepted == added
    assert await events.take(ContactsChanged) == ContactsChanged(alice.address, contact=added)

    service.remove_contact(alice.address, bob)
    assert await events.take(ContactsChanged) == ContactsChanged(alice.address, removed=bob)
    assert service.contacts(alice.address) == []
    with pytest.raises(UserError):
        service.remove_contact(alice.address, bob)
    with pytest.raises(UserError):
        service.accept_contact(alice.address, bob)
    assert not events.seen  # a refused change emits nothing

    # blocking somebody who never was a contact lists them, blocked
    carol = make_address(b"contract-carol")
    stranger = service.block_contact(alice.address, carol)
    assert (stranger.address, stranger.state) == (carol, ContactState.BLOCKED)
    assert await events.take(ContactsChanged) == ContactsChanged(alice.address, contact=stranger)
    assert service.contacts(alice.address) == [stranger]


async def test_add_a_contact_by_invitation_link(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    link = service.invite_link(bob.address)
    assert link.startswith("paranoim:") and bob.address in link
    contact = service.add_contact(alice.address, link)
    assert (contact.address, contact.petname, contact.state) == (
        bob.address, "Bob", ContactState.ACCEPTED)  # the petname is the link's nick
    assert service.add_contact(alice.address, link, "Bobby").petname == "Bobby"


async def test_bad_contacts_are_refused(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = make_address(b"contract-bob")
    typo = bob[:10] + ("a" if bob[10] != "a" else "b") + bob[11:]
    events = Events(service)
    for wrong in (alice.address, typo, bob[:-1], "garbage", "", "paranoim:1/" + bob):
        with pytest.raises(UserError):
            service.add_contact(alice.address, wrong)
    with pytest.raises(UserError):
        service.block_contact(alice.address, typo)
    with pytest.raises(UserError):
        service.contacts(make_address(b"nobody here"))
    with pytest.raises(UserError):
        service.add_contact(make_address(b"nobody here"), bob)
    assert service.contacts(alice.address) == [] and not events.seen


# --- messages ---------------------------------------------------------------------------


async def test_a_first_message_is_a_request_until_accepted(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    events = Events(service)

    envelope_id = await service.send_message(bob.address, alice.address, "hello Alice",
                                             message_id="m1")
    assert isinstance(envelope_id, bytes) and len(envelope_id) == 32
    # writing to an address made it Bob's contact ...
    mine = await events.take(ContactsChanged, owner=bob.address)
    assert mine.contact == ContactInfo(bob.address, alice.address, alice.address[:8],
                                       ContactState.ACCEPTED,
                                       fingerprint(decode_address(alice.address)), NO_KEYS)
    # ... and reached Alice as a contact request, the message held until she accepts
    request = await events.take(ContactsChanged, owner=alice.address)
    assert request.contact is not None and request.removed is None
    assert (request.contact.address, request.contact.state) == (bob.address,
                                                                ContactState.PENDING_IN)
    assert contact_of(service, alice.address, bob.address) == request.contact
    assert not events.left(MessageArrived)

    service.accept_contact(alice.address, bob.address)
    arrived = await events.take(MessageArrived)
    assert (arrived.to, arrived.sender, arrived.text, arrived.message_id) == (
        alice.address, bob.address, "hello Alice", "m1")
    assert arrived.envelope_id == envelope_id and arrived.receipt_wanted
    service.delivered(arrived.envelope_id)
    service.delivered(os.urandom(32))  # one never shown, or from before a restart
    if isinstance(service, FakeService):  # the real one keeps it in a seen-set of its own
        assert service.delivered_ids[0] == envelope_id

    await service.send_receipt(alice.address, bob.address, [envelope_id], ["m1"])
    receipt = await events.take(ReceiptArrived)
    assert receipt == ReceiptArrived(bob.address, alice.address, (envelope_id,), ("m1",))

    again = await service.send_message(alice.address, bob.address, "hi Bob", receipt=False)
    assert again != envelope_id
    reply = await events.take(MessageArrived, to=bob.address)
    assert (reply.sender, reply.text, reply.envelope_id, reply.receipt_wanted) == (
        alice.address, "hi Bob", again, False)


async def test_what_was_sent_and_shown_is_archived_in_order_and_paged(
        service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    service.add_contact(bob.address, alice.address, "alice")
    events = Events(service)
    for n in range(3):
        await service.send_message(alice.address, bob.address, f"note {n}", message_id=f"n{n}")
        await events.take(MessageArrived, to=bob.address, text=f"note {n}")
    sent = service.archive_query(alice.address, Query(peer=bob.address))
    assert [(e.body, e.outgoing, e.origin_id) for e in sent.items] == [
        ("note 0", True, "n0"), ("note 1", True, "n1"), ("note 2", True, "n2")]
    first = service.archive_query(bob.address, Query(peer=alice.address, max=2))
    assert [(e.body, e.outgoing) for e in first.items] == [("note 0", False), ("note 1", False)]
    assert first.count == 3 and not first.complete
    rest = service.archive_query(bob.address, Query(peer=alice.address, after=first.last))
    assert [e.body for e in rest.items] == ["note 2"] and rest.complete
    assert service.archive_query(bob.address, Query(peer=make_address(b"x"))).items == ()
    with pytest.raises(UserError):
        service.archive_query(bob.address, Query(after="no such id"))
    with pytest.raises(UserError):
        service.archive_query(make_address(b"nobody here"), Query())


async def test_writing_to_an_unknown_address_makes_it_an_accepted_contact(
        service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    dave = make_address(b"contract-dave")
    events = Events(service)
    envelope_id = await service.send_message(alice.address, dave, "hi Dave")
    assert isinstance(envelope_id, bytes) and len(envelope_id) == 32
    changed = await events.take(ContactsChanged, owner=alice.address)
    assert changed.contact == ContactInfo(alice.address, dave, dave[:8], ContactState.ACCEPTED,
                                          fingerprint(decode_address(dave)), NO_KEYS)
    assert service.contacts(alice.address) == [changed.contact]
    with pytest.raises(UserError):
        await service.send_message(alice.address, dave[:-1], "to a cut-off address")
    with pytest.raises(UserError):
        await service.send_message(make_address(b"nobody here"), dave, "from nobody")
    assert service.contacts(alice.address) == [changed.contact]


async def test_a_blocked_contact_is_not_shown_and_cannot_be_written_to(
        service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = await service.create_identity("Bob")
    carol = await service.create_identity("Carol")
    service.add_contact(alice.address, carol.address)
    service.block_contact(alice.address, bob.address)
    events = Events(service)

    with pytest.raises(UserError, match="blocked"):
        await service.send_message(alice.address, bob.address, "to a blocked contact")
    spam = await service.send_message(bob.address, alice.address, "spam", message_id="s1")
    await service.send_receipt(bob.address, alice.address, [spam], ["s1"])
    # what Carol sends next arrives; nothing of Bob's came before it
    await service.send_message(carol.address, alice.address, "after the spam")
    arrived = await events.take(MessageArrived, to=alice.address)
    assert (arrived.sender, arrived.text) == (carol.address, "after the spam")
    assert not [e for e in events.seen if getattr(e, "to", None) == alice.address]
    assert not [e for e in events.left(ContactsChanged) if e.owner == alice.address]
    blocked = contact_of(service, alice.address, bob.address)
    assert blocked is not None and blocked.state is ContactState.BLOCKED


# --- chat states ------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [False, True], ids=["off", "on"])
async def test_chat_states(make: MakeService, enabled: bool) -> None:
    service = await make(chat_states=enabled)
    alice = await service.create_identity("Alice")
    bob, dave, erin = (make_address(n) for n in (b"contract-bob", b"contract-dave",
                                                 b"contract-erin"))
    service.add_contact(alice.address, bob)
    service.block_contact(alice.address, erin)
    assert service.chat_states_enabled() is enabled
    for bogus in ("dancing", "", "composing/"):
        with pytest.raises(UserError, match="not a chat state"):
            await service.send_chat_state(alice.address, bob, bogus)
    # The real service then sends it in the background; the fake only records it.
    assert await service.send_chat_state(alice.address, bob, "composing") is enabled
    assert await service.send_chat_state(alice.address, bob, "paused") is enabled
    # never to somebody who is not an accepted contact
    assert await service.send_chat_state(alice.address, dave, "composing") is False
    assert await service.send_chat_state(alice.address, erin, "composing") is False
    assert [c.address for c in service.contacts(alice.address)] == [bob, erin]


# --- rooms, events, health, peers, settings -----------------------------------------------


async def test_room_messages(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    envelope_id = await service.send_room_message(alice.address, "public", "hello room")
    assert isinstance(envelope_id, bytes) and len(envelope_id) == 32
    with pytest.raises(UserError, match="no room"):
        await service.send_room_message(alice.address, "secret", "x")


async def test_an_unsubscribed_listener_hears_nothing(service: ServiceAPI) -> None:
    gone, staying = Events(service), Events(service)
    gone.unsubscribe()
    gone.unsubscribe()  # twice is harmless: a face may close twice
    await service.create_identity("Alice")
    await staying.take(IdentitiesChanged)
    assert gone.seen == []


async def test_health(service: ServiceAPI) -> None:
    health = service.health()
    assert isinstance(health, NodeHealth)
    assert isinstance(health.stored_envelopes, int) and health.stored_envelopes >= 0
    assert isinstance(health.stored_bytes, int) and health.stored_bytes >= 0
    assert isinstance(health.difficulty_bits, int) and health.difficulty_bits > 0
    assert health.storage in ("memory", "sqlite") and isinstance(health.tor, str)
    assert all(isinstance(e, str) for e in health.recent_errors)
    for peer in health.peers:  # what the bot and the web UI read from each
        assert isinstance(peer["address"], str) and isinstance(peer["state"], str)


async def test_peers(service: ServiceAPI) -> None:
    for bad in ("", "no-port", "127.0.0.1:0", "127.0.0.1:65536", "http://127.0.0.1:9",
                "127.0.0.1:x", "a b:9", "::1:9"):
        with pytest.raises(UserError):
            service.add_peer(bad)
    # The fake starts with one linked peer, the real one over LocalNode with none.
    before = [p["address"] for p in service.health().peers]
    service.add_peer(" 127.0.0.1:9 ")
    service.add_peer("127.0.0.1:9")
    after = [p["address"] for p in service.health().peers]
    assert after.count("127.0.0.1:9") == 1 and set(before) < set(after)
    service.remove_peer("127.0.0.1:9")
    assert [p["address"] for p in service.health().peers] == before
    with pytest.raises(UserError):
        service.remove_peer("127.0.0.1:9")


async def test_xmpp_settings_are_a_copy(service: ServiceAPI) -> None:
    # Both start empty: the daemon fills the real one once its listener runs,
    # through a setter that is not part of ServiceAPI.
    settings = service.xmpp_settings()
    assert isinstance(settings, dict)
    settings["port"] = 1
    assert "port" not in service.xmpp_settings()


async def test_private_groups_as_their_creator_changes_them(service: ServiceAPI) -> None:
    alice = await service.create_identity("Alice")
    bob = make_address(b"contract-bob")
    stranger = make_address(b"contract-stranger")
    service.add_contact(alice.address, bob, "Bob")
    events = Events(service)
    group = service.create_group(alice.address, " book  club ")
    assert (group.name, group.creator, group.members, group.version, group.member) == (
        "book club", alice.address, (alice.address,), 1, True)
    assert (await events.take(GroupChanged)).info == group
    with pytest.raises(UserError):  # only accepted contacts
        service.invite_to_group(alice.address, group.group, stranger)
    added = service.invite_to_group(alice.address, group.group, bob)
    assert set(added.members) == {alice.address, bob} and added.version == 2
    assert (await events.take(GroupChanged)).info == added
    assert service.groups(alice.address) == [added]
    with pytest.raises(UserError):  # not a member
        service.remove_from_group(alice.address, group.group, stranger)
    with pytest.raises(UserError):  # the creator stays
        service.remove_from_group(alice.address, group.group, alice.address)
    with pytest.raises(UserError):  # a name is needed
        service.create_group(alice.address, "   ")
    with pytest.raises(UserError):  # no such group
        service.invite_to_group(alice.address, "00" * 16, bob)
    removed = service.remove_from_group(alice.address, group.group, bob)
    assert removed.members == (alice.address,) and removed.version == 3
    with pytest.raises(UserError):
        await service.send_group_message(alice.address, "00" * 16, "hello", "m1")
    with pytest.raises(UserError):
        await service.send_group_message(alice.address, group.group, "", "m1")
    await service.send_group_message(alice.address, group.group, "to myself", "m1")
