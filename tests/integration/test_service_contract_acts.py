"""The acts and presence part of ``ServiceAPI``, run against the real ``Service`` and
``tests.fakes.FakeService`` alike (as ``test_service_contract.py``), so gateway tests
on the fake see what the daemon does: which acts are refused, and when read markers
and presence are off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from bridge.api import ServiceAPI
from bridge.core.acts import Act, ActKind
from bridge.core.errors import UserError
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.fakes import FakeService

BITS = 6
Make = Callable[[bool], Awaitable[ServiceAPI]]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture(params=["fake", "real"])
async def make(request: pytest.FixtureRequest, tmp_path: Path,
               pool: WorkerPool) -> AsyncIterator[Make]:
    started: list[Service] = []

    async def build(on: bool) -> ServiceAPI:
        if request.param == "fake":
            return FakeService(markers=on, presence=on)
        real = Service(Keystore(tmp_path / f"keys{len(started)}"), LocalNode(BITS), pool,
                       base_bits=BITS, markers=on, presence=on)
        await real.start()
        started.append(real)
        return real

    yield build
    for real in started:
        await real.stop()


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
async def test_which_acts_are_refused(make: Make, on: bool) -> None:
    service = await make(on)
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    service.add_contact(alice, bob, "Bob")
    assert (service.markers_enabled(), service.presence_enabled()) == (on, on)
    with pytest.raises(UserError, match="no message with id"):
        service.send_act(alice, bob, Act(ActKind.REACTION, "m-1", ("👍",)))
    await service.send_message(alice, bob, "hi", message_id="m-1")
    assert service.send_act(alice, bob, Act(ActKind.REACTION, "m-1", ("👍",))) is True
    assert service.send_act(alice, bob, Act(ActKind.DISPLAYED, "m-1")) is on
    # to a contact that is not accepted: refused, never a contact request
    service.block_contact(alice, bob)
    with pytest.raises(UserError, match="accepted contacts only"):
        service.send_act(alice, bob, Act(ActKind.RETRACTION, "m-1"))
    with pytest.raises(UserError):
        service.set_presence(alice, "sleeping")
    service.set_presence(alice, "away", "lunch")
    assert service.contact_presence(alice, bob) is None  # never heard from them
