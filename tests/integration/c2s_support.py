"""The embedded XMPP listener over a FakeService, as the listener tests start it:
Alice (password ``alice-pw``) with Carol as an accepted contact."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bridge.xmpp import C2SServer
from tests.fakes import FakeService, make_address

CAROL = make_address(b"carol")
CAROL_JID = f"{CAROL}@p2p.localhost"


def with_alice(service: FakeService) -> FakeService:
    """``service`` with the user alice, who has Carol as a contact."""
    alice = service.add_user("alice", "alice-pw")
    service.put_contact(alice.address, CAROL, "Carol")
    return service


@contextlib.asynccontextmanager
async def listening(service: FakeService, tmp_path: Path,
                    **options: Any) -> AsyncIterator[C2SServer]:
    """A started listener on a free port of 127.0.0.1, closed on the way out."""
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls", **options)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()
