"""Outbound connections through a real SOCKS5 server (Debian's microsocks): HTTP, a
WebSocket peer link and a whole kkv delivery, with and without user/password, and each
way of failing explained in words."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from bridge.core import kkv_records
from bridge.net.kkv import KkvInbox, KkvServer, KkvSettings
from bridge.net.kkv_client import DirectDeliveryError, deliver_direct
from bridge.net.tor import (
    CONNECT_ERRORS,
    PROXY_ERRORS,
    describe_connect_error,
    outbound_session,
    socks_connector,
)
from tests.envelopes import make_envelope
from tests.interop.drivers import Microsocks, ProgramMissing
from tests.util import free_tcp_port, skip_or_fail

pytestmark = pytest.mark.interop

USER, PASSWORD = "paranoim", "s3cret-pass"


@pytest.fixture
def socks_auth() -> Iterator[Microsocks]:
    try:
        proc = Microsocks(user=USER, password=PASSWORD)
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    with proc:
        yield proc


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello through socks")


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(b"echo:" + msg.data)
    return ws


@pytest.fixture
async def target() -> AsyncIterator[tuple[int, KkvServer]]:
    """A local aiohttp app: /hello, /ws (an echoing WebSocket) and the kkv endpoints."""
    app = web.Application(client_max_size=kkv_records.MSG_BODY_LIMIT)
    app.router.add_get("/hello", _hello)
    app.router.add_get("/ws", _echo)
    server = KkvServer(KkvInbox(), KkvSettings(pow_bits=8, envelope_base_bits=4))
    app.add_routes(server.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, server
    finally:
        await runner.cleanup()


async def _exercise(session: aiohttp.ClientSession, port: int, server: KkvServer) -> None:
    # "localhost" goes to the proxy unresolved (rdns) and the proxy resolves it.
    async with session.get(f"http://localhost:{port}/hello") as r:
        assert (r.status, await r.text()) == (200, "hello through socks")
    async with session.ws_connect(f"http://localhost:{port}/ws") as ws:
        await ws.send_bytes(b"frame")
        assert (await ws.receive_bytes(timeout=5)) == b"echo:frame"
    raw = make_envelope(now=int(time.time()), base_bits=4)
    await deliver_direct(session, f"http://localhost:{port}", raw, tor=True)
    assert server.inbox.messages[-1].envelope == raw


async def test_http_websocket_and_kkv_through_socks(microsocks: Microsocks, target):
    port, server = target
    connector = socks_connector(microsocks.host, microsocks.port)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _exercise(session, port, server)


async def test_with_user_and_password(socks_auth: Microsocks, target):
    port, server = target
    connector = socks_connector(socks_auth.host, socks_auth.port, username=USER, password=PASSWORD)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _exercise(session, port, server)


async def test_outbound_session_uses_the_proxy(microsocks: Microsocks, target):
    port, _ = target
    async with (
        outbound_session((microsocks.host, microsocks.port)) as session,
        session.get(f"http://localhost:{port}/hello") as r,
    ):
        assert r.status == 200


async def test_names_are_resolved_by_the_proxy_not_here(microsocks: Microsocks):
    # A name nobody can resolve: if it were looked up locally, aiohttp would raise a
    # DNS error before any proxy is involved; with rdns the proxy reports the failure.
    async with aiohttp.ClientSession(
        connector=socks_connector(microsocks.host, microsocks.port)
    ) as session:
        with pytest.raises(PROXY_ERRORS):
            await session.get("http://paranoim-rdns-check.invalid/")


async def _failure(session: aiohttp.ClientSession, url: str) -> str:
    with pytest.raises(CONNECT_ERRORS) as info:
        async with session.get(url) as r:
            await r.read()
    return describe_connect_error(info.value)


async def test_wrong_password_is_explained(socks_auth: Microsocks, target):
    port, _ = target
    for creds in ({"username": USER, "password": "wrong"}, {}):
        connector = socks_connector(socks_auth.host, socks_auth.port, **creds)
        async with aiohttp.ClientSession(connector=connector) as session:
            text = await _failure(session, f"http://127.0.0.1:{port}/hello")
        assert text.startswith("the SOCKS proxy could not connect to the destination"), text
        assert "auth" in text.lower(), text


async def test_refused_destination_is_explained(microsocks: Microsocks):
    closed = free_tcp_port()
    async with aiohttp.ClientSession(
        connector=socks_connector(microsocks.host, microsocks.port)
    ) as session:
        text = await _failure(session, f"http://127.0.0.1:{closed}/")
        assert text.startswith("the SOCKS proxy could not connect to the destination"), text
        with pytest.raises(
            DirectDeliveryError,
            match="reading the endpoint's key: the SOCKS proxy could not "
            "connect to the destination",
        ) as info:
            await deliver_direct(session, f"http://127.0.0.1:{closed}", b"", tor=True)
        assert info.value.status is None


async def test_proxy_not_running_is_explained():
    async with aiohttp.ClientSession(
        connector=socks_connector("127.0.0.1", free_tcp_port())
    ) as session:
        text = await _failure(session, "http://127.0.0.1:9/")
    assert text.startswith("cannot reach the SOCKS proxy; is Tor running?"), text
