"""The act throttle (one per contact per interval, latest per slot, bounded), the
presence book (last state wins, a lapsed one is offline), and the known message ids."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.core.actqueue import ActQueue, Done, QueueFullError, Send, Wait
from bridge.core.acts import Act, ActKind, Presence, Show
from bridge.core.archive import Entry
from bridge.events import Event, EventBus, MessageArrived, PresenceArrived
from bridge.knownids import PER_PEER, KnownIds
from bridge.presencebook import PresenceBook


def test_one_per_interval_and_the_latest_of_a_slot_wins() -> None:
    q = ActQueue[str, str](interval=1.0)
    assert q.offer("bob", "fix m-1", "first", 0.0) is True  # start a flusher
    assert q.step("bob", 0.0) == Send("first")
    for n in range(1000):  # a thousand corrections of one message while one is in flight
        assert q.offer("bob", "fix m-1", f"fix {n}", 0.1) is False
    assert q.pending("bob") == 1
    assert q.step("bob", 0.5) == Wait(0.5)
    assert q.step("bob", 1.0) == Send("fix 999")
    assert q.step("bob", 1.2) == Done()
    assert q.offer("bob", "fix m-1", "again", 1.3) is True  # the flusher ended: a new one


def test_slots_keep_their_order_and_are_bounded() -> None:
    q = ActQueue[str, str](interval=1.0, max_pending=3)
    q.offer("bob", "a", "a1", 0.0)
    q.offer("bob", "b", "b1", 0.0)
    q.offer("bob", "a", "a2", 0.0)  # replaces in place
    q.offer("bob", "c", "c1", 0.0)
    with pytest.raises(QueueFullError):
        q.offer("bob", "d", "d1", 0.0)
    q.offer("carol", "d", "d1", 0.0)  # another contact has its own bound
    sent = []
    now = 0.0
    while not isinstance(step := q.step("bob", now), Done):
        if isinstance(step, Wait):
            now += step.seconds
        else:
            assert isinstance(step, Send)
            sent.append((step.item, now))
    assert sent == [("a2", 0.0), ("b1", 1.0), ("c1", 2.0)]


def test_keys_are_bounded_and_idle_ones_forgotten() -> None:
    q = ActQueue[int, str](interval=1.0, max_keys=2)
    q.offer(1, "s", "x", 0.0)
    q.offer(2, "s", "x", 0.0)
    with pytest.raises(QueueFullError):
        q.offer(3, "s", "x", 0.0)
    for key in (1, 2):
        assert isinstance(q.step(key, 0.0), Send)
        assert isinstance(q.step(key, 5.0), Done)
    q.offer(3, "s", "x", 5.0)  # the idle ones went
    assert len(q) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000

    def __call__(self) -> int:
        return self.now


def _book() -> tuple[PresenceBook, list[Event], Clock]:
    bus, seen, clock = EventBus(), list[Event](), Clock()
    bus.subscribe(seen.append)
    return PresenceBook(bus, clock), seen, clock


def test_the_last_presence_wins_and_a_lapsed_one_is_offline() -> None:
    book, seen, clock = _book()
    assert book.current("me", "bob") is None  # never heard: shown as without presence
    book.arrived("me", "bob", Presence(Show.AWAY, "lunch"), 2000, expiry=1600)
    book.arrived("me", "bob", Presence(Show.DND), 1000, expiry=1600)  # older: ignored
    book.arrived("me", "bob", Presence(Show.CHAT), 3000, expiry=900)  # expired: ignored
    assert seen == [PresenceArrived("me", "bob", "away", "lunch", 2000)]
    assert book.current("me", "bob") == seen[0]
    clock.now = 1600
    assert book.current("me", "bob") == PresenceArrived("me", "bob", "unavailable", "", 2000)
    book.arrived("me", "bob", Presence(Show.AVAILABLE), 4000, expiry=2200)
    assert book.current("me", "bob") == PresenceArrived("me", "bob", "", "", 4000)
    book.forget("me")
    assert book.current("me", "bob") is None


async def test_a_lapsed_presence_is_told_as_unavailable_once() -> None:
    bus, seen = EventBus(), list[Event]()
    gone = asyncio.Event()

    def on(event: Event) -> None:
        seen.append(event)
        if isinstance(event, PresenceArrived) and event.show == "unavailable":
            gone.set()

    bus.subscribe(on)
    tasks: list[asyncio.Task[None]] = []
    book = PresenceBook(bus, lambda: int(time.time()),
                        lambda coro: tasks.append(asyncio.ensure_future(coro)))
    now = int(time.time())
    book.arrived("me", "bob", Presence(Show.AWAY), 1, expiry=now + 1)
    book.arrived("me", "bob", Presence(Show.DND), 2, expiry=now + 2)  # one watch for both
    assert len(tasks) == 1
    await asyncio.wait_for(gone.wait(), 10)
    await asyncio.gather(*tasks)
    assert [(e.show, e.sent_at_ms) for e in seen if isinstance(e, PresenceArrived)] == [
        ("away", 1), ("dnd", 2), ("unavailable", 2)]
    assert book.current("me", "bob") == PresenceArrived("me", "bob", "unavailable", "", 2)


def _arrived(message_id: str, envelope_id: bytes = b"\x01" * 32,
             act: Act | None = None) -> MessageArrived:
    return MessageArrived("me", "bob", "hi", 0, envelope_id, False, message_id, act=act)


def test_known_ids_are_the_ids_both_clients_know() -> None:
    archived: list[Entry] = [Entry("a1", 0, "bob", True, "old", origin_id="old-1"),
                             Entry("a2", 0, "carol", False, "x", origin_id="c-1")]
    known = KnownIds(lambda owner: archived if owner == "me" else [])
    known.add("me", "bob", "sent-1")
    known.on_event(_arrived("got-1"))
    known.on_event(_arrived("", b"\xab" * 32))  # no id: the one the gateway made
    known.on_event(_arrived("react-1", act=Act(ActKind.REACTION, "got-1", ("x",))))
    assert known.knows("me", "bob", "sent-1") and known.knows("me", "bob", "got-1")
    assert known.knows("me", "bob", "ab" * 16)
    assert known.knows("me", "bob", "old-1")  # from the archive
    assert not known.knows("me", "bob", "react-1")  # a reaction is not a message
    assert not known.knows("me", "bob", "c-1")  # another conversation's
    assert not known.knows("me", "carol", "sent-1")
    for n in range(PER_PEER):
        known.add("me", "bob", f"n-{n}")
    assert not known.knows("me", "bob", "sent-1")  # bounded: the oldest went
