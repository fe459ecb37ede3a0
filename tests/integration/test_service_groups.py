"""Private groups through three real services on one in-process node
(bridge.groups): the creator invites two contacts who are not each other's, every
member sees every message once, a removed member gets nothing after the removal and
its messages are refused, and a forged state or a stranger's record is refused
without a trace in the key file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.core.address import decode_address
from bridge.core.errors import UserError
from bridge.core.groups import MAX_MEMBERS, GroupMessage, GroupState
from bridge.core.identity import Identity
from bridge.events import GroupChanged, GroupMessageArrived, MessageArrived
from bridge.groups import MAX_GROUPS
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.integration.test_service import Inbox
from tests.nodes import SharedNode
from tests.util import wait_until

BITS = 6


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(2)
    yield p
    p.close()


class Member:
    def __init__(self, service: Service, address: str) -> None:
        self.service, self.address, self.inbox = service, address, Inbox(service)

    def said(self) -> list[tuple[str, str]]:
        return [(e.sender, e.text) for e in self.inbox.events
                if isinstance(e, GroupMessageArrived)]


@pytest.fixture
async def trio(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[tuple[Member, ...]]:
    node = SharedNode(BITS)
    out = []
    for name in ("Alice", "Bob", "Carol", "Dave"):
        s = Service(Keystore(tmp_path / name), node, pool, base_bits=BITS)
        await s.start()
        out.append(Member(s, (await s.create_identity(name)).address))
    alice, bob, carol, dave = out
    for friend in (bob, carol, dave):  # Bob, Carol and Dave know Alice only
        alice.service.add_contact(alice.address, friend.address)
        friend.service.add_contact(friend.address, alice.address)
    yield alice, bob, carol, dave
    for m in out:
        await m.service.stop()


async def _invited(m: Member, group: str) -> GroupChanged:
    event = await m.inbox.wait(GroupChanged, timeout=20)
    assert isinstance(event, GroupChanged) and event.info.group == group
    return event


async def _refused(m: Member, why: str) -> None:
    """Wait until ``m``'s service reports a refusal naming ``why``."""
    await wait_until(lambda: why in " ".join(m.service.errors.lines()), 20, message=why)


async def _heard(m: Member, text: str) -> None:
    await m.inbox.wait(GroupMessageArrived, timeout=20, text=text)


async def test_a_group_of_three_then_one_removed(trio: tuple[Member, ...]) -> None:
    alice, bob, carol, _ = trio
    g = alice.service.create_group(alice.address, "  the   three ")
    assert g.name == "the three" and g.members == (alice.address,)
    alice.service.invite_to_group(alice.address, g.group, bob.address)
    got = await _invited(bob, g.group)
    assert got.invited_by == alice.address and got.info.creator == alice.address
    info = alice.service.invite_to_group(alice.address, g.group, carol.address)
    assert set(info.members) == {alice.address, bob.address, carol.address}
    await _invited(carol, g.group)
    while bob.service.groups(bob.address)[0].version < info.version:
        await bob.inbox.wait(GroupChanged, timeout=20)
    assert bob.service.groups(bob.address)[0].members == info.members

    await alice.service.send_group_message(alice.address, g.group, "from alice", "a1")
    await bob.service.send_group_message(bob.address, g.group, "from bob", "b1")
    await carol.service.send_group_message(carol.address, g.group, "from carol", "c1")
    for m, others in ((alice, (bob, carol)), (bob, (alice, carol)), (carol, (alice, bob))):
        for o in others:
            await _heard(m, f"from {o.service.ids.records()[0].nick.lower()}")
    assert not any(m.said() for m in (alice, bob, carol))  # _heard took each one

    after = alice.service.remove_from_group(alice.address, g.group, carol.address)
    assert carol.address not in after.members
    gone = await _invited(carol, g.group)
    assert not gone.info.member
    await _invited(bob, g.group)
    await alice.service.send_group_message(alice.address, g.group, "without carol", "a2")
    await _heard(bob, "without carol")
    with pytest.raises(UserError):  # Carol's daemon knows she is out
        await carol.service.send_group_message(carol.address, g.group, "let me in", "c2")
    # A Carol whose software ignores that: her old-version message, signed by her,
    # reaches Alice's daemon, which refuses it and passes nothing on.
    ident = carol.service.ids.ident(carol.service.ids.rec(carol.address))
    sneak = GroupMessage.make(ident.secret_key, ident.public, bytes.fromhex(g.group), 3,
                              0, "c3", "sneaked in")
    await carol.service.outbox.send_message(carol.address, alice.address, "",
                                            receipt=False, group=sneak)
    await _refused(alice, "not a member")
    await alice.service.send_group_message(alice.address, g.group, "still without", "a3")
    await _heard(bob, "still without")
    assert not bob.said() and not alice.said()
    # Alice to Carol, behind any group record that would have gone to her, in order:
    await alice.service.send_message(alice.address, carol.address, "just us")
    await carol.inbox.wait(MessageArrived, timeout=20, text="just us")
    assert not carol.said()  # nothing after the removal reached Carol
    alice.service.invite_to_group(alice.address, g.group, carol.address)  # back again
    again = await _invited(carol, g.group)
    assert again.invited_by == alice.address and again.info.member


async def test_forged_states_and_strangers_are_refused(trio: tuple[Member, ...]) -> None:
    alice, bob, _, dave = trio
    g = alice.service.create_group(alice.address, "ours")
    alice.service.invite_to_group(alice.address, g.group, bob.address)
    await _invited(bob, g.group)
    # Dave (Alice's contact, not Bob's) cannot sign a state for Alice's group, and a
    # state he signs himself, naming Bob, reaches Bob as a record from a stranger.
    ident = dave.service.ids.ident(dave.service.ids.rec(dave.address))
    members = frozenset({decode_address(bob.address), ident.public})
    own = GroupState.make(ident.secret_key, bytes(16), 1, "trap", ident.public, members)
    dave.service.add_contact(dave.address, bob.address)
    await dave.service.outbox.send_message(dave.address, bob.address, "", receipt=False,
                                           group=own)
    # To Alice, Dave sends a state under Alice's group id with her as creator: forged.
    real = GroupState.make(ident.secret_key, bytes.fromhex(g.group), 9, "ours",
                           decode_address(alice.address), frozenset(members))
    forged = GroupState(real.group_id, 9, "ours", real.creator, real.members,
                        real.signature)
    await dave.service.outbox.send_message(dave.address, alice.address, "", receipt=False,
                                           group=forged)
    # A state of 200 members (made by hand: no encoder makes one) is refused unread.
    crowd = {Identity.from_seed(i.to_bytes(32, "big")).public for i in range(1, 200)}
    crowd.add(ident.public)
    huge = object.__new__(GroupState)
    for name, value in (("group_id", bytes(16)), ("version", 1), ("name", "crowd"),
                        ("creator", ident.public), ("members", tuple(sorted(crowd))),
                        ("signature", bytes(64))):
        object.__setattr__(huge, name, value)
    await dave.service.outbox.send_message(dave.address, alice.address, "", receipt=False,
                                           group=huge)
    await _refused(alice, "1 to 32 members, not 200")
    await _refused(bob, "not an accepted contact")
    await _refused(alice, "not sent by the group's creator")
    await alice.service.send_group_message(alice.address, g.group, "after all that", "a1")
    await _heard(bob, "after all that")
    assert [i.name for i in bob.service.groups(bob.address)] == ["ours"]
    assert alice.service.groups(alice.address)[0].version == 2
    with pytest.raises(UserError):  # a stranger is never invited
        alice.service.invite_to_group(alice.address, g.group, "a" * 56)
    with pytest.raises(UserError):  # only the creator changes the members
        bob.service.remove_from_group(bob.address, g.group, alice.address)


async def test_the_bounds_are_kept(trio: tuple[Member, ...]) -> None:
    alice, bob, _, _ = trio
    book = alice.service.group_book
    for i in range(MAX_GROUPS):
        alice.service.create_group(alice.address, f"g{i}")
    with pytest.raises(UserError, match="at most 64 groups"):
        alice.service.create_group(alice.address, "one too many")
    # a full group (32 members, made as the creator would) takes no 33rd
    ident = alice.service.ids.ident(alice.service.ids.rec(alice.address))
    others = {Identity.from_seed(bytes([i]) * 32).public for i in range(1, 32)}
    full = GroupState.make(ident.secret_key, bytes(16), 1, "full", ident.public, others)
    rec = alice.service.ids.rec(alice.address)
    rec.groups = {full.group_id.hex(): full.encode().hex()}
    assert len(book.group(alice.address, full.group_id.hex()).members) == MAX_MEMBERS
    with pytest.raises(UserError, match="at most 32 members"):
        alice.service.invite_to_group(alice.address, full.group_id.hex(), bob.address)
