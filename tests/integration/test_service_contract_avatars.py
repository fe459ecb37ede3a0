"""The avatars part of ``ServiceAPI`` (an identity's picture to its contacts, a
contact's picture kept), run against the real ``Service`` (over an in-process
``LocalNode``) and ``tests.fakes.FakeService`` alike, as ``test_service_contract.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.api import MAX_AVATAR, ServiceAPI
from bridge.core.errors import UserError
from bridge.events import ContactAvatarChanged, Event
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.fakes import FakeService, make_address
from tests.integration.pep_support import png

BITS = 6


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture(params=["fake", "real"])
async def service(request: pytest.FixtureRequest, tmp_path: Path,
                  pool: WorkerPool) -> AsyncIterator[ServiceAPI]:
    if request.param == "fake":
        yield FakeService()
        return
    real = Service(Keystore(tmp_path / "keys"), LocalNode(BITS), pool, base_bits=BITS)
    await real.start()
    yield real
    await real.stop()


async def test_a_picture_reaches_accepted_contacts_and_only_a_picture_leaves(
        service: ServiceAPI) -> None:
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    carol = (await service.create_identity("Carol")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    service.add_contact(carol, alice, "Alice")  # Alice never accepted Carol
    told: asyncio.Queue[ContactAvatarChanged] = asyncio.Queue()

    def on(event: Event) -> None:
        if isinstance(event, ContactAvatarChanged):
            told.put_nowait(event)
    service.subscribe(on)

    for bad in (b"plain text", png(1, 1, pad=MAX_AVATAR)):
        with pytest.raises(UserError):
            service.share_avatar(alice, bad)
    with pytest.raises(UserError):
        service.share_avatar(make_address(b"nobody here"), png(1, 1))
    assert service.contact_avatar(alice, bob) is None

    service.share_avatar(carol, png(3, 3))
    picture = png(2, 2)
    service.share_avatar(bob, picture)
    event = await asyncio.wait_for(told.get(), 20)
    assert (event.to, event.sender, event.media_type, event.size) == (
        alice, bob, "image/png", len(picture))
    assert service.contact_avatar(alice, bob) == ("image/png", picture)
    assert service.contact_avatar(alice, carol) is None
