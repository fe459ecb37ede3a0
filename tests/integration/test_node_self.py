"""A node never peers with itself: its own address, by any name, is not dialled,
listed, counted nor passed on. Two (and three) real nodes on loopback; a TCP
forward stands in for a NAT or a public name that only dialling can unmask."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from bridge.localnode import LocalNode
from bridge.net.node import Node
from tests.gossip_support import fast_config, linked, start_nodes, stop_all, wait_all


class Forward:
    """127.0.0.1:<port> → 127.0.0.1:<target>, counting the connections it forwards."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> Forward:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(r, w2), pipe(r2, w))

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition no node event announces (a frame handled, a set changed)."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


async def test_own_address_by_any_name_is_not_dialled_listed_counted_or_passed_on():
    a, b = await start_nodes(2)
    fwd = await Forward(a.port).start()
    via = f"127.0.0.1:{fwd.port}"  # reaches a; nothing but dialling it can tell
    own = [f"127.0.0.1:{a.port}", f"localhost:{a.port}", f"LocalHost:{a.port}"]
    c: Node | None = None
    try:
        b.add_peer(via)
        await wait_all([a, b], linked(1), 5)
        assert fwd.accepted == 1

        # given directly and by a second name: recognised without dialling
        for addr in own:
            assert a.is_self(addr)
            a.add_peer(addr)
        assert not a.dialer.kept
        assert not a.is_self(f"127.0.0.1:{b.port}") and not a.is_self(via)

        # given through the forward: dialled once, found to be itself, dropped
        a.add_peer(via)
        await a.wait_for(lambda: a.is_self(via) and via not in a.dialer.kept, 5)
        assert fwd.accepted == 2
        a.add_peer(via)  # again: nothing
        assert not a.dialer.kept
        assert [p["address"] for p in a.peers()] == [f"127.0.0.1:{b.port}"]  # b only
        assert a.health()["peers"] == 1

        # heard of through peer exchange: dropped, never dialled
        a.config.target_peers = 8
        link = b.active_conns()[0]
        marker = "127.0.0.1:1"  # another node's address (nothing listens: refused at once)
        link.send(link.link.peers([*own, via, f"0.0.0.0:{a.port}", marker]))
        await until(lambda: marker in a.known)
        assert set(a.known) == {f"127.0.0.1:{b.port}", marker}
        a.dialer.discover()
        await until(lambda: marker in a.dialer.tried)
        assert set(a.dialer.tried) == {marker} and fwd.accepted == 2

        # passed on to a third node: b's own address, which b announced itself; not the
        # marker, heard second-hand and never reached; none of a's aliases
        c = Node(fast_config(bootstrap=[f"127.0.0.1:{a.port}"]))
        await c.start()
        await until(lambda: f"127.0.0.1:{b.port}" in c.known)
        assert marker not in c.known
        assert via not in c.known and f"localhost:{a.port}" not in c.known
        assert not any(addr in a.dialer.kept for addr in [*own, via])
        assert fwd.accepted == 2
    finally:
        await stop_all([a, b] + ([c] if c else []))
        await fwd.close()


async def test_a_node_bound_to_every_interface_knows_its_loopback_names():
    a = Node(fast_config(host="0.0.0.0"))
    await a.start()
    try:
        for addr in (f"127.0.0.1:{a.port}", f"localhost:{a.port}", f"[::1]:{a.port}",
                     f"0.0.0.0:{a.port}", f"127.0.0.2:{a.port}"):
            assert a.is_self(addr), addr
            a.add_peer(addr)
        assert not a.dialer.kept
        assert not a.is_self(f"127.0.0.1:{a.port + 1}") and not a.is_self("not a peer")
    finally:
        await a.stop()


def test_local_node_is_never_its_own_peer():
    assert LocalNode(8).is_self("127.0.0.1:45070") is False
