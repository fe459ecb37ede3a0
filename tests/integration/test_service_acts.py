"""Acts and presence through the real service (sealed, stamped, opened, over an
in-process node): two identities of one daemon write to each other. What arrives
names the message acted on; the archive keeps corrections and retractions as
stanzas of their own, not reactions; read markers and presence are dropped by a
receiving daemon that has them off, whatever the sender does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bridge import actsend
from bridge.core.acts import Act, ActKind
from bridge.core.archive import Archive, Entry, Query
from bridge.core.errors import UserError
from bridge.events import Event, MessageArrived, PresenceArrived
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.archive import ArchiveFile
from bridge.store.keystore import Keystore

BITS = 6
E = TypeVar("E")


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


class Events:
    def __init__(self, service: Service) -> None:
        self.seen: list[Event] = []
        self._tick = asyncio.Event()
        service.subscribe(self._on)

    def _on(self, event: Event) -> None:
        self.seen.append(event)
        self._tick.set()

    async def take(self, kind: type[E], **match: object) -> E:
        async def find() -> E:
            while True:
                for event in self.seen:
                    if isinstance(event, kind) and all(
                            getattr(event, k) == v for k, v in match.items()):
                        self.seen.remove(event)
                        return event
                self._tick.clear()
                await self._tick.wait()
        return await asyncio.wait_for(find(), 20)


async def _service(tmp_path: Path, pool: WorkerPool, on: bool) -> tuple[Service, str, str]:
    s = Service(Keystore(tmp_path / "keys"), LocalNode(BITS), pool, base_bits=BITS,
                markers=on, presence=on)
    await s.start()
    alice = (await s.create_identity("Alice")).address
    bob = (await s.create_identity("Bob")).address
    s.add_contact(alice, bob, "Bob")
    s.add_contact(bob, alice, "Alice")
    return s, alice, bob


@pytest.fixture
async def on(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[tuple[Service, str, str]]:
    s, alice, bob = await _service(tmp_path, pool, True)
    yield s, alice, bob
    await s.stop()


@pytest.fixture
async def off(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[tuple[Service, str, str]]:
    s, alice, bob = await _service(tmp_path, pool, False)
    yield s, alice, bob
    await s.stop()


async def test_acts_arrive_and_the_archive_keeps_what_changes_text(
        on: tuple[Service, str, str]) -> None:
    s, alice, bob = on
    events = Events(s)
    await s.send_message(alice, bob, "helo", message_id="m-1")
    await events.take(MessageArrived, to=bob, text="helo")
    fix = Act(ActKind.CORRECTION, "m-1")
    assert s.send_act(alice, bob, fix, "hello", message_id="m-2")
    s.send_act(alice, bob, Act(ActKind.REACTION, "m-1", ("👍",)))
    got = await events.take(MessageArrived, to=bob, act=fix)
    assert (got.text, got.message_id) == ("hello", "m-2")
    await events.take(MessageArrived, to=bob, act=Act(ActKind.REACTION, "m-1", ("👍",)))
    assert s.send_act(bob, alice, Act(ActKind.DISPLAYED, "m-1"))
    await events.take(MessageArrived, to=alice, act=Act(ActKind.DISPLAYED, "m-1"))
    await s.send_message(bob, alice, "yes", message_id="b-1", reply_to="m-1")
    got = await events.take(MessageArrived, to=alice, text="yes")
    assert got.act == Act(ActKind.REPLY, "m-1", to_recipient=True)  # Alice wrote m-1
    s.send_act(alice, bob, Act(ActKind.RETRACTION, "m-1"))
    await events.take(MessageArrived, to=bob, act=Act(ActKind.RETRACTION, "m-1"))

    with pytest.raises(UserError, match="no message with id"):
        s.send_act(alice, bob, Act(ActKind.REACTION, "never-sent", ("👍",)))
    # a reply to a message nobody wrote goes as a plain message
    await s.send_message(alice, bob, "hm", message_id="m-3", reply_to="nobody")
    assert (await events.take(MessageArrived, to=bob, text="hm")).act is None

    def acts(owner: str) -> list[tuple[bool, str, str]]:
        page = s.archive_query(owner, Query(max=50))
        return [(e.outgoing, e.body, e.act) for e in page.items]

    assert acts(bob) == [(False, "helo", ""), (False, "hello", "correction m-1"),
                         (True, "yes", "reply m-1 peer"), (False, "", "retraction m-1"),
                         (False, "hm", "")]
    assert acts(alice) == [(True, "helo", ""), (True, "hello", "correction m-1"),
                           (False, "yes", "reply m-1 me"), (True, "", "retraction m-1"),
                           (True, "hm", "")]


async def test_presence_last_state_wins(on: tuple[Service, str, str]) -> None:
    s, alice, bob = on
    events = Events(s)
    assert s.contact_presence(bob, alice) is None  # not heard yet: shown as always
    s.set_presence(alice, "away", "lunch " * 20)
    got = await events.take(PresenceArrived, to=bob, sender=alice)
    assert (got.show, got.status) == ("away", ("lunch " * 20)[:64])  # status bounded
    assert s.contact_presence(bob, alice) == got
    with pytest.raises(UserError):
        s.set_presence(alice, "sleeping")

    # a contact accepted later hears it at once, not at the next refresh
    carol = (await s.create_identity("Carol")).address
    s.add_contact(carol, alice, "Alice")
    s.add_contact(alice, carol, "Carol")
    got = await events.take(PresenceArrived, to=carol, sender=alice)
    assert got.show == "away"


async def test_presence_is_refreshed_offline_too(tmp_path: Path, pool: WorkerPool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """So a contact whose daemon restarted learns the person is offline, instead of
    showing them as never heard from (online)."""
    monkeypatch.setattr(actsend, "PRESENCE_REFRESH", 0.2)
    monkeypatch.setattr(actsend, "PRESENCE_INTERVAL", 0.1)
    s, alice, bob = await _service(tmp_path, pool, True)
    try:
        events = Events(s)
        s.set_presence(alice, "unavailable")
        first = await events.take(PresenceArrived, to=bob, sender=alice, show="unavailable")
        again = await events.take(PresenceArrived, to=bob, sender=alice, show="unavailable")
        assert again.sent_at_ms > first.sent_at_ms
    finally:
        await s.stop()


async def test_a_daemon_with_them_off_drops_markers_and_presence(
        off: tuple[Service, str, str]) -> None:
    s, alice, bob = off
    events = Events(s)
    await s.send_message(alice, bob, "one", message_id="m-1")
    await events.take(MessageArrived, to=bob, text="one")
    assert s.send_act(bob, alice, Act(ActKind.DISPLAYED, "m-1")) is False  # not sent
    s.set_presence(bob, "away")
    # the sender side forced on: this daemon, receiving, still drops them
    s.acts.markers = s.acts.presence = True
    s.send_act(bob, alice, Act(ActKind.DISPLAYED, "m-1"))
    s.set_presence(bob, "dnd")
    await asyncio.sleep(0)
    await s.send_message(bob, alice, "after", message_id="b-2")
    await events.take(MessageArrived, to=alice, text="after")
    assert [e for e in events.seen if isinstance(e, PresenceArrived)
            or (isinstance(e, MessageArrived) and e.act is not None)] == []
    assert s.contact_presence(alice, bob) is None


def test_the_archive_file_keeps_an_entrys_act(tmp_path: Path) -> None:
    key = bytes(range(32))
    file = ArchiveFile(tmp_path / "archive.db", key)
    fixed = Entry("a1", 5, "bob", True, "hello", origin_id="m-2", act="correction m-1")
    plain = Entry("a2", 6, "bob", False, "hi", origin_id="b-1")
    file.add("alice", fixed)
    file.add("alice", plain)
    file.close()
    archive = Archive()
    again = ArchiveFile(tmp_path / "archive.db", key)
    assert again.load(archive, ["alice"]) == 2
    assert archive.entries("alice") == [fixed, plain]
    again.close()
