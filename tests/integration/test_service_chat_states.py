"""Chat states (XEP-0085) through the service over one shared in-process node: off
by default, sent only to accepted contacts with a short lifetime, rate-limited and
collapsed to the latest, shown only from accepted contacts and never held."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.core.envelope import Envelope, Kind
from bridge.core.errors import UserError
from bridge.events import ChatStateArrived, ContactsChanged, IdentityInfo, MessageArrived
from bridge.net.workers import WorkerPool
from bridge.service import CHAT_STATE_TTL, Service
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


async def _service(tmp: Path, node: SharedNode, pool: WorkerPool, *, chat_states: bool,
                   deliver: bool = True) -> Service:
    s = Service(Keystore(tmp), node, pool, base_bits=BITS, chat_states=chat_states)
    s.outbox.chat_states.interval = 0.3
    await s.start(deliver=deliver)
    return s


async def _pair(tmp: Path, pool: WorkerPool, *, a_on: bool = True, b_on: bool = True,
                mutual: bool = True, deliver: bool = True,
                ) -> tuple[SharedNode, Service, Service, IdentityInfo, IdentityInfo]:
    node = SharedNode(BITS)
    a = await _service(tmp / "a", node, pool, chat_states=a_on)
    b = await _service(tmp / "b", node, pool, chat_states=b_on, deliver=deliver)
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    a.add_contact(alice.address, b.invite_link(bob.address))
    if mutual:
        b.add_contact(bob.address, a.invite_link(alice.address))
    return node, a, b, alice, bob


def _direct(node: SharedNode) -> list[Envelope]:
    return [e for e in node.iter_stored() if e.kind == Kind.DIRECT]


async def _published(node: SharedNode, count: int) -> None:
    await wait_until(lambda: len(_direct(node)) >= count, 10, message=f"{count} envelopes")


def _states(inbox: Inbox) -> list[str]:
    return [e.state for e in inbox.events if isinstance(e, ChatStateArrived)]


async def test_typing_reaches_an_accepted_contact_briefly_and_cheaply(
        tmp_path: Path, pool: WorkerPool) -> None:
    node, a, b, alice, bob = await _pair(tmp_path, pool)
    b_in = Inbox(b)
    assert await a.send_chat_state(alice.address, bob.address, "composing") is True
    ev = await b_in.wait(ChatStateArrived)
    assert (ev.to, ev.sender, ev.state) == (bob.address, alice.address, "composing")
    [env] = _direct(node)
    assert env.expiry - int(time.time()) <= CHAT_STATE_TTL  # short-lived: base PoW
    assert not [e for e in b_in.events if isinstance(e, MessageArrived)]
    with pytest.raises(UserError, match="not a chat state"):
        await a.send_chat_state(alice.address, bob.address, "typing")


async def test_states_are_rate_limited_and_collapse_to_the_latest(
        tmp_path: Path, pool: WorkerPool) -> None:
    node, a, b, alice, bob = await _pair(tmp_path, pool)
    a.outbox.chat_states.interval = 2.0  # long enough that nothing below depends on timing
    b_in = Inbox(b)
    assert await a.send_chat_state(alice.address, bob.address, "composing")
    await b_in.wait(ChatStateArrived, state="composing")  # the first leaves at once
    started = time.monotonic()
    for state in ("paused", "composing", "paused", "inactive"):
        assert await a.send_chat_state(alice.address, bob.address, state)
    # the rest wait out the interval, and only the latest goes
    await b_in.wait(ChatStateArrived, state="inactive")
    assert time.monotonic() - started > 1.0
    await _published(node, 2)
    assert len(_direct(node)) == 2
    # a state the contact already has is not sent again
    assert await a.send_chat_state(alice.address, bob.address, "inactive")
    # a message implies "active": states still waiting are dropped rather than arrive
    # after it, and a client's <active/> after it costs nothing
    await a.send_chat_state(alice.address, bob.address, "composing")  # inside the interval
    await a.send_chat_state(alice.address, bob.address, "paused")
    await a.send_message(alice.address, bob.address, "done typing")
    assert (await b_in.wait(MessageArrived)).text == "done typing"
    await a.send_chat_state(alice.address, bob.address, "active")
    await a.send_chat_state(alice.address, bob.address, "gone")  # after the interval
    await b_in.wait(ChatStateArrived, state="gone")
    assert _states(b_in) == []  # no composing, paused or active
    # composing, inactive, the message, gone (Bob's daemon also answered the session
    # the message started: that one is to Alice)
    assert len([e for e in _direct(node) if e.tag in b.inbox.watched()]) == 4


async def test_off_by_default_nothing_is_sent(tmp_path: Path, pool: WorkerPool) -> None:
    node, a, b, alice, bob = await _pair(tmp_path, pool, a_on=False)
    assert Service(Keystore(tmp_path / "c"), node, pool).chat_states is False
    b_in = Inbox(b)
    assert await a.send_chat_state(alice.address, bob.address, "composing") is False
    await a.send_message(alice.address, bob.address, "no typing shown")
    assert (await b_in.wait(MessageArrived)).text == "no typing shown"
    assert len(_direct(node)) == 1 and _states(b_in) == []


async def test_off_at_the_recipient_nothing_is_shown(tmp_path: Path, pool: WorkerPool) -> None:
    node, a, b, alice, bob = await _pair(tmp_path, pool, b_on=False)
    b_in = Inbox(b)
    assert await a.send_chat_state(alice.address, bob.address, "composing")
    await _published(node, 1)
    await a.send_message(alice.address, bob.address, "after")
    await b_in.wait(MessageArrived)
    assert _states(b_in) == []


async def test_unknown_pending_and_blocked_senders_are_ignored(tmp_path: Path,
                                                               pool: WorkerPool) -> None:
    # Alice has Bob as a contact; Bob has never heard of Alice.
    node, a, b, alice, bob = await _pair(tmp_path, pool, mutual=False)
    b_in = Inbox(b)
    assert await a.send_chat_state(alice.address, bob.address, "composing")
    await _published(node, 1)
    assert b.contacts(bob.address) == []  # no contact request from a chat state
    assert b_in.events == []
    # a first message makes a request; chat states while it is pending are not held
    await a.send_message(alice.address, bob.address, "hello?")
    await b_in.wait(ContactsChanged)
    assert await a.send_chat_state(alice.address, bob.address, "paused")
    await _published(node, 3)
    assert b.held_messages(bob.address, alice.address) == 1
    b.accept_contact(bob.address, alice.address)
    await b_in.wait(MessageArrived)
    assert _states(b_in) == []
    # blocked: nothing
    b.block_contact(bob.address, alice.address)
    assert await a.send_chat_state(alice.address, bob.address, "composing")
    await _published(node, 4)
    assert _states(b_in) == []
    # and nobody sends a chat state to a stranger
    assert await b.send_chat_state(bob.address, alice.address, "composing") is False


async def test_a_state_older_than_what_was_shown_is_dropped(tmp_path: Path,
                                                            pool: WorkerPool) -> None:
    """Gossip may hand envelopes over in any order: a "composing" written before a
    message must not show up after it."""
    node, a, b, alice, bob = await _pair(tmp_path, pool, deliver=False)
    await a.send_chat_state(alice.address, bob.address, "composing")
    await _published(node, 1)
    await a.send_message(alice.address, bob.address, "sent after typing")
    in_order = node.iter_stored()
    node.iter_stored = lambda: list(reversed(list(in_order)))  # type: ignore[method-assign]
    b_in = Inbox(b)
    b.start_delivery()
    assert (await b_in.wait(MessageArrived)).text == "sent after typing"
    assert _states(b_in) == []
