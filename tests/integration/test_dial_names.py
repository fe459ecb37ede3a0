"""A stranger's DNS name is resolved once, checked, and dialled at the address that
was checked (bridge/net/dialer.py): a second, different answer from the name's server
(DNS rebinding) cannot point the connection into a range a stranger may not reach.

The name's server is played by a resolver that answers differently each time, as a
rebinding server does; the connections are real."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from bridge.net.node import Node
from tests.gossip_support import start_nodes, stop_all


class Recorder:
    """An HTTP server on loopback that notes each request to /p2p and refuses it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (Host header, peer address)
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.host, request.remote))
        return web.Response(status=404)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_get("/p2p", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    with contextlib.suppress(OSError):  # where localhost also names ::1
        await web.TCPSite(runner, "::1", rec.port).start()
    yield rec
    await runner.cleanup()


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    nodes = await start_nodes(1)
    yield nodes[0]
    await stop_all(nodes)


def rebinding(*answers: list[str]) -> Callable[[str], Awaitable[list[str]]]:
    """A name server that gives each answer in turn (then the last for ever)."""
    queue = list(answers)

    async def resolve(host: str) -> list[str]:
        assert host == "peer.rebind.test"
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return resolve


async def test_a_name_is_dialled_at_the_address_that_was_checked(
        node: Node, recorder: Recorder) -> None:
    addr = f"peer.rebind.test:{recorder.port}"
    node.book.dial_private = True  # loopback may be dialled: the recorder is there
    node.dialer.resolve = rebinding(["127.0.0.1"], ["10.1.2.3"])
    await node.dialer._discovered(addr)  # refused by the recorder (404): a link never opens
    assert recorder.seen == [(addr, "127.0.0.1")], "the checked address, the name in Host"


async def test_a_name_that_points_into_a_forbidden_range_is_not_dialled(
        node: Node, recorder: Recorder) -> None:
    addr = f"peer.rebind.test:{recorder.port}"
    node.book.dial_private = False
    for answer in (["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], [], ["10.0.0.8"]):
        node.dialer.resolve = rebinding(answer)
        assert await node.dialer._in_scope(addr) is None, answer
        await node.dialer._discovered(addr)
    assert recorder.seen == []
    node.dialer.resolve = rebinding(["93.184.216.34", "2606:2800:220:1::"])
    assert await node.dialer._in_scope(addr) == "93.184.216.34"
    # addresses that are not names are taken as they are
    assert await node.dialer._in_scope(f"127.0.0.1:{recorder.port}") == ""
