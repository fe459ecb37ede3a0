"""A file in transit survives a restart with storage "sqlite": the sender goes on from
the first chunk that had not left, under the same file id, and the recipient
collects on from the chunks it kept. Both identities live in one real service (over
an in-process node), stopped in the middle of the file and started again on the same
key file and files directory."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.core.envelope import Envelope
from bridge.core.filechunks import CHUNK_SIZE
from bridge.events import Event, MessageArrived
from bridge.files import FileStore
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.util import wait_until

BITS = 6
KEY = bytes(range(32))
BASE = "http://127.0.0.1:9"  # no listener needed: the test reads the store itself


class CutNode(LocalNode):
    """An in-process node whose network goes away after ``chunks`` envelopes of the
    largest size (file chunks; nothing else is that large): later ones never leave."""

    def __init__(self, bits: int, chunks: int) -> None:
        super().__init__(bits)
        self.left = chunks
        self.cut = asyncio.Event()

    async def publish(self, raw: bytes) -> Envelope:
        if len(raw) > 32 * 1024:
            if self.left <= 0:
                self.cut.set()
                await asyncio.Event().wait()  # the connection hangs; the stop cancels it
            self.left -= 1
        return await super().publish(raw)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


def store(tmp_path: Path) -> FileStore:
    files = FileStore(tmp_path / "files", KEY)
    files.base_url = BASE
    return files


async def test_a_file_cut_off_by_a_restart_completes_after_it(tmp_path: Path,
                                                              pool: WorkerPool) -> None:
    node = CutNode(BITS, chunks=2)
    files = store(tmp_path)
    first = Service(Keystore(tmp_path / "keys"), node, pool, base_bits=BITS, files=files)
    await first.start()
    alice = (await first.create_identity("Alice")).address
    bob = (await first.create_identity("Bob")).address
    first.add_contact(alice, bob, "Bob")
    first.add_contact(bob, alice, "Alice")
    data = os.urandom(5 * CHUNK_SIZE - 100)
    upload = files.put(alice, "pic.png", "image/png", data)
    assert first.send_file(alice, bob, files.url(upload), "pic-1")
    await asyncio.wait_for(node.cut.wait(), 30)  # two chunks left, the third hangs
    await wait_until(lambda: sum(len(p.pieces) for p in first.file_collector.partial.values())
                     == 2, 10)

    def sent_so_far() -> list[tuple[str, str, int]]:
        kept = files.kept("outgoing")
        return [(j["owner"], j["to"], j["next"]) for j in json.loads(kept[0][1])] if kept else []

    # the sender records its progress after each chunk leaves, a moment after it left
    await wait_until(lambda: sent_so_far() == [(alice, bob, 2)], 10)
    await first.stop()

    waiting = json.loads(files.kept("outgoing")[0][1])
    assert [(j["owner"], j["to"], j["next"]) for j in waiting] == [(alice, bob, 2)]
    assert len(files.kept("in-")) == 2  # Bob's two chunks, on disk
    assert all(data[:64] not in p.read_bytes() for p in (tmp_path / "files").rglob("*")
               if p.is_file())

    again = store(tmp_path)
    second = Service(Keystore(tmp_path / "keys"), LocalNode(BITS), pool, base_bits=BITS,
                     files=again)
    arrived: asyncio.Queue[MessageArrived] = asyncio.Queue()

    def on(event: Event) -> None:
        if isinstance(event, MessageArrived) and event.to == bob:
            arrived.put_nowait(event)
    second.subscribe(on)
    await second.start()
    try:
        event = await asyncio.wait_for(arrived.get(), 30)
        assert (event.sender, event.message_id) == (alice, "pic-1")
        got = again.get(again.token_of(event.url))
        assert got is not None and got.data == data and got.name == "pic.png"
        await wait_until(lambda: json.loads(again.kept("outgoing")[0][1]) == [], 10)
        assert again.kept("in-") == [] and second.file_collector.partial == {}
        assert arrived.empty()
    finally:
        await second.stop()


async def test_a_file_no_client_took_is_shown_again_after_a_restart_and_then_not(
        tmp_path: Path, pool: WorkerPool) -> None:
    node = LocalNode(BITS)  # the network keeps its envelopes across the restarts

    async def run() -> tuple[Service, asyncio.Queue[MessageArrived]]:
        service = Service(Keystore(tmp_path / "keys"), node, pool, base_bits=BITS,
                          files=store(tmp_path))
        arrived: asyncio.Queue[MessageArrived] = asyncio.Queue()
        service.subscribe(lambda e: arrived.put_nowait(e)
                          if isinstance(e, MessageArrived) and e.to == bob else None)
        await service.start()
        return service, arrived

    first, arrived = await run()
    alice = (await first.create_identity("Alice")).address
    bob = (await first.create_identity("Bob")).address
    first.add_contact(alice, bob, "Bob")
    first.add_contact(bob, alice, "Alice")
    data = os.urandom(CHUNK_SIZE + 10)
    upload = first.files.put(alice, "two.bin", "", data)
    assert first.send_file(alice, bob, first.files.url(upload), "two")
    shown = await asyncio.wait_for(arrived.get(), 30)
    await first.stop()  # before any client had it

    second, arrived = await run()
    again = await asyncio.wait_for(arrived.get(), 30)
    assert (again.message_id, again.envelope_id, again.url) == (
        "two", shown.envelope_id, shown.url)
    got = second.files.get(second.files.token_of(again.url))
    assert got is not None and got.data == data
    second.delivered(again.envelope_id)  # a client has it now
    await second.stop()

    third, arrived = await run()
    try:
        await third.send_message(alice, bob, "after the file", message_id="t")
        later = await asyncio.wait_for(arrived.get(), 30)
        assert (later.text, later.url) == ("after the file", "")  # the file was not shown
    finally:
        await third.stop()
