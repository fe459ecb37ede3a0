"""Hostile input on the c2s socket: each ends with the right stream error while
another, logged-in client keeps being served."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.xmpp import C2SServer, Timeouts
from tests.fakes import STREAM_HEADER, FakeService, RawClient, SlixClient
from tests.util import wait_until

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>
<message><body>&lol9;</body></message>"""
XXE = (
    b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='localhost' version='1.0'><message><body>&x;</body></message>"
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    service = FakeService()
    service.add_user("alice", "alice-pw")
    service.add_user("mallory", "mallory-pw")
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls",
                    timeouts=Timeouts(pre_auth=1.0, idle=600.0, tls_handshake=2.0))
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def bystander(server: C2SServer) -> AsyncIterator[SlixClient]:
    client = await SlixClient("alice@localhost/bystander", "alice-pw", server.cert_path
                              ).connect(server.port)
    assert client.started.is_set()
    yield client
    # the whole point: whatever happened to the other connection, this one still works
    await client.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    assert not client.closed.is_set()
    await client.close()


def condition(reply: bytes) -> str:
    start = reply.index(b"<stream:error>") + len(b"<stream:error><")
    return reply[start:].split(b" ", 1)[0].decode()


async def flood(raw: RawClient, chunks: int, chunk: bytes) -> bytes:
    """Write until the server hangs up, reading at the same time; returns what it said."""
    reading = asyncio.ensure_future(raw.read_to_eof(timeout=30))
    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
        for _ in range(chunks):
            if reading.done():
                break
            raw.send(chunk)
            await raw.writer.drain()
    return await reading


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (BILLION_LAUGHS, "restricted-xml"),
        (XXE, "restricted-xml"),
        (STREAM_HEADER + b"<!-- hello -->", "restricted-xml"),
        (STREAM_HEADER + b"<?php system('id'); ?>", "restricted-xml"),
        (STREAM_HEADER + b"<message>&nbsp;</message>", "restricted-xml"),
        (STREAM_HEADER + b"<message>\x00\xff\xfe garbage", "not-well-formed"),
        (b"\x00\x01\x02 not xml at all", "not-well-formed"),
        (STREAM_HEADER.replace(b"jabber:client", b"jabber:server"), "invalid-namespace"),
        (STREAM_HEADER.replace(b"to='localhost'", b"to='evil.example'"), "host-unknown"),
        (STREAM_HEADER + b"<message to='x'><body>hi</body></message>", "policy-violation"),
    ],
    ids=["billion-laughs", "xxe", "comment", "pi", "entity", "garbage", "garbage-first",
         "namespace", "host", "before-starttls"],
)
async def test_plaintext_hostile_input(server: C2SServer, bystander: SlixClient, data: bytes,
                                       expected: str) -> None:
    raw = await RawClient.open(server.port)
    raw.send(data)
    reply = await raw.read_to_eof()
    assert condition(reply) == expected
    raw.close()


async def test_deep_nesting(server: C2SServer, bystander: SlixClient) -> None:
    raw = await RawClient.open(server.port)
    await raw.starttls(server.cert_path)
    reply = await flood(raw, 100, b"<a>" * 1000)  # 100,000 levels, in chunks
    assert condition(reply) == "policy-violation"
    raw.close()


async def test_ten_megabyte_stanza_from_a_logged_in_client(server: C2SServer,
                                                           bystander: SlixClient) -> None:
    raw = await RawClient.open(server.port)
    await raw.login(server.cert_path, "mallory", "mallory-pw")
    raw.send(b"<message to='x@p2p.localhost' type='chat'><body>")
    reply = await flood(raw, 160, b"A" * 65536)  # 10 MiB, never closed
    assert condition(reply) == "policy-violation"
    assert b"262144" in reply  # the text names the limit
    raw.close()


async def test_stanza_before_auth_is_not_authorized(server: C2SServer,
                                                    bystander: SlixClient) -> None:
    raw = await RawClient.open(server.port)
    await raw.starttls(server.cert_path)
    raw.send(b"<message to='alice@localhost'><body>spoof</body></message>")
    assert condition(await raw.read_to_eof()) == "not-authorized"
    raw.close()


async def test_spoofed_from_is_invalid_from(server: C2SServer, bystander: SlixClient) -> None:
    raw = await RawClient.open(server.port)
    await raw.login(server.cert_path, "mallory", "mallory-pw")
    raw.send(b"<message from='alice@localhost/bystander' to='x@p2p.localhost'>"
             b"<body>it is me</body></message>")
    assert condition(await raw.read_to_eof()) == "invalid-from"
    raw.close()


async def test_idle_and_slow_senders_time_out(server: C2SServer, bystander: SlixClient) -> None:
    idle = await RawClient.open(server.port)
    idle.send(STREAM_HEADER)  # then nothing
    slow = await RawClient.open(server.port)
    slow.send(STREAM_HEADER)
    reading = asyncio.ensure_future(slow.read_to_eof(timeout=10))
    stanza = b"<iq type='get' id='slow'><ping xmlns='urn:xmpp:ping'/></iq>" * 100
    with contextlib.suppress(ConnectionError, OSError):
        for byte in stanza:  # a byte every 20 ms never completes a stanza in time
            if reading.done():
                break
            slow.send(bytes([byte]))
            await asyncio.sleep(0.02)
    assert condition(await reading) == "connection-timeout"
    assert condition(await idle.read_to_eof()) == "connection-timeout"
    idle.close()
    slow.close()


async def test_direct_tls_client_hello_is_closed_cleanly(server: C2SServer,
                                                         bystander: SlixClient) -> None:
    ctx = ssl.create_default_context(cafile=str(server.cert_path))
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", server.port, ssl=ctx,
                                    server_hostname="localhost"), 10)


async def test_plaintext_after_starttls_is_discarded(server: C2SServer,
                                                     bystander: SlixClient) -> None:
    raw = await RawClient.open(server.port)
    raw.send(STREAM_HEADER)
    await raw.expect(b"</stream:features>")
    # the classic STARTTLS command injection: a stanza riding behind <starttls/>
    raw.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
             b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
             b"AG1hbGxvcnkAbWFsbG9yeS1wdw==</auth>")
    await raw.expect(b"<proceed")
    await raw.writer.start_tls(ssl.create_default_context(cafile=str(server.cert_path)),
                               server_hostname="localhost")
    raw.buffer = b""
    raw.send(STREAM_HEADER)
    features = await raw.expect(b"</stream:features>")
    assert b"<success" not in features and b"<failure" not in features
    assert b"SCRAM-SHA-256" in features
    raw.close()


async def test_many_connections_do_not_stop_service(server: C2SServer,
                                                     bystander: SlixClient) -> None:
    opened = [await RawClient.open(server.port) for _ in range(200)]
    for raw in opened:
        raw.send(STREAM_HEADER + b"<message>")
    await bystander.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    for raw in opened:
        raw.close()


async def test_a_failed_tls_handshake_logs_why(server: C2SServer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Regression: a connection closed during the handshake logged 'TLS with … failed: '
    and nothing after it (the exception had no text)."""
    async def starttls_then(data: bytes) -> None:
        client = await RawClient.open(server.port)
        client.send(STREAM_HEADER)
        await client.expect(b"</stream:features>")
        client.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await client.expect(b"<proceed")
        if data:
            client.send(data)
            await client.reader.read()  # the server closes
        client.writer.close()

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "TLS with" in r.getMessage()]

    with caplog.at_level("INFO", "bridge.xmpp.stream"):
        await starttls_then(b"")
        await wait_until(lambda: failures(), 10, message="the failure logged")
        await starttls_then(b"GET / HTTP/1.0\r\n\r\n")
        await wait_until(lambda: len(failures()) == 2, 10, message="the second one logged")
    closed, http = failures()
    assert "failed: the client closed the connection during the handshake (" in closed
    assert http.endswith("failed: HTTP_REQUEST (SSLError from SSL)")
