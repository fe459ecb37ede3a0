"""The files part of ``ServiceAPI`` (XEP-0363 slots, files sent to contacts), run
against the real ``Service`` (over an in-process ``LocalNode``, the file listener
real) and ``tests.fakes.FakeService`` alike, as ``test_service_contract.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from bridge.api import ServiceAPI, UploadRefusedError
from bridge.core.errors import UserError
from bridge.events import Event, MessageArrived
from bridge.files import FileStore
from bridge.fileserver import FileServer
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.fakes import FakeService

BITS = 6
Make = Callable[[], Awaitable[ServiceAPI]]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture(params=["fake", "real"])
async def make(request: pytest.FixtureRequest, tmp_path: Path,
               pool: WorkerPool) -> AsyncIterator[Make]:
    started: list[Service] = []
    servers: list[FileServer] = []

    async def build() -> ServiceAPI:
        files = FileStore(None, None, max_upload=256 * 1024)
        server = FileServer(files)
        await server.start()
        servers.append(server)
        if request.param == "fake":
            return FakeService(files=files)
        real = Service(Keystore(tmp_path / f"keys{len(started)}"), LocalNode(BITS), pool,
                       base_bits=BITS, files=files)
        await real.start()
        started.append(real)
        return real

    yield build
    for real in started:
        await real.stop()
    for server in servers:
        await server.stop()


async def put(url: str, data: bytes) -> int:
    async with aiohttp.ClientSession() as http, http.put(url, data=data) as resp:
        return resp.status


async def get(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


async def head(url: str) -> tuple[int, str, str, bytes]:
    """Status, Content-Length, Content-Type and body of a HEAD (what Dino asks first)."""
    async with aiohttp.ClientSession() as http, http.head(url) as resp:
        return (resp.status, resp.headers.get("Content-Length", ""),
                resp.headers.get("Content-Type", ""), await resp.read())


async def test_an_uploaded_file_reaches_an_accepted_contact(make: Make) -> None:
    service = await make()
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    carol = (await service.create_identity("Carol")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    assert service.upload_limit() == 256 * 1024
    with pytest.raises(UploadRefusedError) as big:
        service.upload_slot(alice, "big.bin", 256 * 1024 + 1)
    assert big.value.limit == 256 * 1024
    data = bytes(range(256)) * 600  # 153600 bytes: three chunks
    put_url, get_url = service.upload_slot(alice, "notes.bin", len(data), "application/zip")
    assert await put(put_url, data) == 201
    arrived: asyncio.Queue[MessageArrived] = asyncio.Queue()

    def on(event: Event) -> None:
        if isinstance(event, MessageArrived) and event.to == bob:
            arrived.put_nowait(event)
    service.subscribe(on)

    assert service.send_file(alice, bob, "not a url", "m-0") is None  # an ordinary text
    assert service.send_file(bob, alice, get_url, "m-0") is None  # not Bob's file
    with pytest.raises(UserError, match="accepted contacts"):
        service.send_file(alice, carol, get_url, "m-0")
    archived = service.send_file(alice, bob, f" {get_url} ", "m-1")
    assert archived
    event = await asyncio.wait_for(arrived.get(), 30)
    assert (event.sender, event.message_id) == (alice, "m-1")
    assert event.url == event.text and event.url != get_url and event.url.endswith("/notes.bin")
    assert await get(event.url) == data
    assert await head(event.url) == (200, str(len(data)), "application/zip", b"")


async def test_a_stranger_cannot_ask_for_a_slot_of_another_identity(make: Make) -> None:
    service = await make()
    with pytest.raises(UserError):
        service.upload_slot("b" * 56, "x", 1)
