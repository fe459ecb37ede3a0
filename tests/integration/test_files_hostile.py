"""Hostile file chunks: what a contact (or a stranger) can make a daemon keep is
bounded by sizes, counts and time, a file whose hash is wrong is dropped, and a
stranger's chunks are never kept. The collector (``bridge.filerecv``) on its own,
then the real service's inbox over an in-process node."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.core import crypto
from bridge.core.filechunks import CHUNK_SIZE, FileChunk, split
from bridge.core.records import DirectMessage
from bridge.events import Event, MessageArrived, SessionNotice
from bridge.filerecv import IDLE, MAX_BYTES, MAX_FILES, MAX_FILES_PER_SENDER, FileAssembler
from bridge.files import FileStore
from bridge.filesend import CHUNK_TTL
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.util import wait_until

ME = "me"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(chunk: FileChunk, msgid: str = "m") -> DirectMessage:
    return DirectMessage(1, "", message_id=msgid, chunk=chunk)


def collector(max_upload: int = 16 << 20) -> tuple[FileAssembler, FileStore, list[str], Clock]:
    store = FileStore(None, None, max_upload=max_upload)
    store.base_url = "http://127.0.0.1:9"
    errors: list[str] = []
    clock = Clock()
    return FileAssembler(store, errors.append, clock=clock), store, errors, clock


def take(fa: FileAssembler, sender: str, chunk: FileChunk, accepted: bool = True,
         msgid: str = "m") -> MessageArrived | None:
    return fa.on_chunk(ME, sender, accepted, record(chunk, msgid), os.urandom(32), 0)


def file_chunks(size: int, digest: bytes | None = None, name: str = "f.bin") -> list[FileChunk]:
    data = os.urandom(size)
    return split(os.urandom(16), digest or crypto.hash32(data), name, "", data)


def test_a_whole_file_is_shown_once_and_late_copies_start_nothing() -> None:
    fa, store, errors, _ = collector()
    chunks = file_chunks(2 * CHUNK_SIZE + 7)
    assert take(fa, "bob", chunks[2]) is None and take(fa, "bob", chunks[0]) is None
    assert take(fa, "bob", chunks[0]) is None  # a copy
    shown = take(fa, "bob", chunks[1])
    assert shown is not None and shown.url == shown.text and shown.message_id == "m"
    f = store.get(store.token_of(shown.url))
    assert f is not None and f.data == b"".join(c.data for c in chunks) and f.sender == "bob"
    assert fa.partial == {} and errors == []
    assert take(fa, "bob", chunks[0]) is None and fa.partial == {}  # done: not begun again


def test_a_wrong_hash_keeps_nothing() -> None:
    fa, store, errors, _ = collector()
    chunks = file_chunks(CHUNK_SIZE + 1, digest=bytes(32))
    assert [take(fa, "bob", c) for c in chunks] == [None, None]
    assert fa.partial == {} and store._ram == {}
    assert len(errors) == 1 and "hash" in errors[0]


def test_a_strangers_chunks_are_never_kept() -> None:
    fa, store, _, _ = collector()
    for c in file_chunks(10):
        assert take(fa, "mallory", c, accepted=False) is None
    assert fa.partial == {} and store._ram == {} and fa.refused == 1


def test_a_file_that_never_completes_lapses() -> None:
    fa, _, _, clock = collector()
    first, *_ = file_chunks(3 * CHUNK_SIZE)
    take(fa, "bob", first)
    assert fa.held_bytes() == 3 * CHUNK_SIZE
    clock.now += IDLE + 1
    take(fa, "bob", file_chunks(5)[0])  # any later chunk sweeps what lapsed
    assert fa.held_bytes() == 0 and fa.partial == {}


def test_chunks_that_disagree_with_the_first_are_refused() -> None:
    fa, _, _, _ = collector()
    chunks = file_chunks(CHUNK_SIZE + 1)
    take(fa, "bob", chunks[0])
    other = FileChunk(chunks[1].file_id, bytes(32), chunks[1].size, 1, "f.bin", "",
                      chunks[1].data)
    assert take(fa, "bob", other) is None and take(fa, "bob", chunks[1], msgid="x") is None
    assert fa.refused == 2 and len(fa.partial) == 1


def test_ten_thousand_chunk_records_stay_within_the_bounds() -> None:
    fa, store, _, _ = collector()
    size = 16 << 20  # each names a new 16 MiB file that will never complete
    data = os.urandom(CHUNK_SIZE)
    for n in range(10_000):
        chunk = FileChunk(n.to_bytes(16, "big"), bytes(32), size, 0, "x", "", data)
        assert take(fa, f"sender-{n % 50}", chunk) is None
        assert len(fa.partial) <= MAX_FILES and fa.held_bytes() <= MAX_BYTES
    assert fa.refused == 10_000 - MAX_BYTES // size
    per_sender: dict[str, int] = {}
    for _, sender, _ in fa.partial:
        per_sender[sender] = per_sender.get(sender, 0) + 1
    assert max(per_sender.values()) <= MAX_FILES_PER_SENDER
    # and one over the daemon's own limit is refused from its first chunk
    big = FileChunk(b"b" * 16, bytes(32), (16 << 20) + 1, 0, "x", "", data)
    assert take(fa, "bob", big) is None and store._ram == {}


# --- through the real inbox ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture
async def service(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[Service]:
    files = FileStore(None, None)
    files.base_url = "http://127.0.0.1:9"
    real = Service(Keystore(tmp_path / "keys"), LocalNode(6), pool, base_bits=6, files=files)
    await real.start()
    yield real
    await real.stop()


async def test_the_inbox_keeps_nothing_from_a_stranger_and_nothing_with_a_wrong_hash(
        service: Service) -> None:
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    carol = (await service.create_identity("Carol")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    service.add_contact(carol, alice, "Alice")  # Alice does not know Carol
    shown: list[MessageArrived] = []

    def on(event: Event) -> None:
        if isinstance(event, MessageArrived) and event.to == alice:
            shown.append(event)
    service.subscribe(on)
    assert service.inbox.files is not None
    files = service.inbox.files

    for chunk in file_chunks(CHUNK_SIZE + 3):  # a stranger's file, whole and right
        await service.outbox.send_message(carol, alice, "", receipt=False, message_id="c",
                                          chunk=chunk)
    await wait_until(lambda: files.refused == 2, 10)
    for chunk in file_chunks(CHUNK_SIZE + 3, digest=bytes(32)):  # a contact's, wrong hash
        await service.outbox.send_message(bob, alice, "", receipt=False, message_id="b",
                                          chunk=chunk)
    await wait_until(lambda: any("hash" in e for e in service.errors.lines()), 10)
    await service.send_message(bob, alice, "after the files", message_id="t")
    await wait_until(lambda: shown, 10)
    assert [e.text for e in shown] == ["after the files"]
    assert files.partial == {} and service.files._ram == {}
    assert [c.address for c in service.contacts(alice)] == [bob]  # no request from Carol


async def test_a_files_chunks_live_an_hour(service: Service) -> None:
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    shown: list[MessageArrived] = []
    service.subscribe(lambda e: shown.append(e) if isinstance(e, MessageArrived) else None)
    data = os.urandom(6 * CHUNK_SIZE)  # more chunks than are stamped at once
    upload = service.files.put(alice, "six.bin", "", data)
    assert service.send_file(alice, bob, service.files.url(upload), "six")
    await wait_until(lambda: shown, 20)
    chunks = [e for e in service.node.iter_stored() if e.size > 32 * 1024]
    assert len(chunks) == 6
    now = service.clock()
    assert all(now < e.expiry <= now + CHUNK_TTL for e in chunks)
    f = service.files.get(service.files.token_of(shown[0].url))
    assert f is not None and f.data == data


async def test_a_file_that_cannot_leave_whole_is_told_to_the_sender(service: Service) -> None:
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    told: list[SessionNotice] = []
    service.subscribe(lambda e: told.append(e) if isinstance(e, SessionNotice) else None)
    upload = service.files.put(alice, "a.bin", "", b"x" * 100)
    assert service.send_file(alice, bob, service.files.url(upload), "gone")
    service.remove_contact(alice, bob)  # before the first chunk could leave
    await wait_until(lambda: told, 10)
    assert (told[0].to, told[0].sender) == (alice, bob)
    assert "message gone" in told[0].text and "no longer an accepted contact" in told[0].text
    assert not [e for e in service.node.iter_stored() if e.size > 32 * 1024]
