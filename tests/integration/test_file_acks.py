"""No file is lost silently (``bridge.fileacks``): the contact's daemon confirms each
file it kept, and a file it never confirms is told to the sender's person.

Real services over in-process nodes: a contact whose daemon shares the node gets the
file and confirms it (the sender's client sees a receipt of the file's message, and
nothing is told); a contact whose daemon is on a node no envelope reaches (as one
stopped for longer than the chunks live) never confirms it, and after the wait the
sender's person is told that the file did not reach them and to send it again.
The wait is the chunks' hour and ten minutes; the test shortens it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.events import Event, MessageArrived, ReceiptArrived, SessionNotice
from bridge.fileacks import ACK_GRACE, FileAcks
from bridge.files import FileStore
from bridge.filesend import CHUNK_TTL
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from bridge.tasks import TaskSet
from tests.util import wait_until


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


def make(path: Path, pool: WorkerPool, *, at_rest: bool = False) -> Service:
    files = (FileStore(path / "files", b"k" * 32) if at_rest else FileStore(None, None))
    files.base_url = "http://127.0.0.1:9"
    return Service(Keystore(path / "keys"), LocalNode(6), pool, base_bits=6, files=files,
                   storage="sqlite" if at_rest else "memory")


@pytest.fixture
async def service(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[Service]:
    real = make(tmp_path, pool)
    await real.start()
    yield real
    await real.stop()


def record(service: Service) -> list[Event]:
    seen: list[Event] = []
    service.subscribe(seen.append)
    return seen


async def test_a_file_kept_by_the_contact_is_confirmed_and_nothing_is_told(
        service: Service) -> None:
    assert service.file_acks.wait == CHUNK_TTL + ACK_GRACE
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    seen = record(service)
    upload = service.files.put(alice, "a.bin", "", os.urandom(70_000))
    assert service.send_file(alice, bob, service.files.url(upload), "f1")
    await wait_until(lambda: service.file_acks.confirmed == 1, 20)
    assert service.file_acks.watched == {}
    assert [e.url != "" for e in seen if isinstance(e, MessageArrived) and e.to == bob] == [True]
    receipts = [e for e in seen if isinstance(e, ReceiptArrived) and e.to == alice]
    assert [(r.sender, r.message_ids) for r in receipts] == [(bob, ("f1",))]
    assert not [e for e in seen if isinstance(e, SessionNotice)]


async def test_a_file_the_contact_never_confirms_is_told_to_the_sender(
        service: Service, tmp_path: Path, pool: WorkerPool) -> None:
    away = make(tmp_path / "away", pool)  # Bob's daemon: nothing of Alice's node reaches it
    await away.start()
    try:
        alice = (await service.create_identity("Alice")).address
        bob = (await away.create_identity("Bob")).address
        service.add_contact(alice, bob, "Bob")
        away.add_contact(bob, alice, "Alice")
        service.file_acks.wait = 1.5
        seen = record(service)
        upload = service.files.put(alice, "b.bin", "", os.urandom(1000))
        assert service.send_file(alice, bob, service.files.url(upload), "f2")
        await wait_until(lambda: [e for e in seen if isinstance(e, SessionNotice)], 20)
        [told] = [e for e in seen if isinstance(e, SessionNotice)]
        assert (told.to, told.sender) == (alice, bob)
        assert "message f2" in told.text and "did not reach" in told.text
        assert "Send it again" in told.text
        assert service.file_acks.lost == 1 and service.file_acks.watched == {}
        assert away.file_collector.partial == {}  # it really never got there
    finally:
        await away.stop()


async def test_what_is_followed_survives_a_restart(tmp_path: Path, pool: WorkerPool) -> None:
    first = make(tmp_path, pool, at_rest=True)
    await first.start()
    alice = (await first.create_identity("Alice")).address
    bob = "b" * 56  # never reached: only its key in the followed list matters here
    first.file_acks.sent(alice, bob, "f3")
    assert list(first.file_acks.watched) == [(alice, bob, "f3")]
    await first.stop()

    again = make(tmp_path, pool, at_rest=True)
    again.file_acks.clock = lambda: 4e9  # long after the deadline kept on disk
    seen = record(again)
    await again.start()
    try:
        await wait_until(lambda: [e for e in seen if isinstance(e, SessionNotice)], 10)
        [told] = [e for e in seen if isinstance(e, SessionNotice)]
        assert told.sender == bob and "message f3" in told.text
    finally:
        await again.stop()


async def test_a_receipt_that_comes_before_the_file_is_followed_counts() -> None:
    told: list[str] = []
    acks = FileAcks(FileStore(None, None), TaskSet("test"), lambda o, c, text: told.append(text),
                    send_receipt, wait=0.01)
    acks.on_event(ReceiptArrived("alice", "bob", (bytes(32),), ("f4",)))
    acks.sent("alice", "bob", "f4")  # the last chunk's sending returned after it
    assert acks.confirmed == 1 and acks.watched == {} and told == []


async def send_receipt(owner: str, to: str, ids: list[bytes], message_ids: list[str]) -> None:
    raise AssertionError("no receipt is sent here")
