"""End to end: files and pictures between two real daemons (XEP-0363, XEP-0066).

Alice (daemon A) uploads a picture through slixmpp's XEP-0363 plugin into her own
daemon's local listener and sends its URL to Bob (daemon B); the file crosses the
network in chunk records, and Bob's client gets a message whose OOB URL (and body)
points at his own daemon, from which he downloads the same bytes. The listener's
refusals (a file over the limit, a slot that does not exist or was used) are seen
by a client as they are sent. The listener's URLs are https, under the certificate
of the daemon's XMPP listener, which the test trusts as a client is told to; the
same port answers plain HTTP too.
"""

from __future__ import annotations

import io
import os
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest
import slixmpp
from slixmpp.plugins.xep_0363.http_upload import FileTooBig

from tests.integration.e2e_support import (
    Client,
    Daemon,
    IqError,
    pair_from_template,
    start_pair,
)
from tests.util import free_tcp_port

pytestmark = pytest.mark.slow
UPLOAD_NS = "urn:xmpp:http:upload:0"
OOB_NS = "jabber:x:oob"
# Each listener's port: a context trusting its daemon's certificate (one per daemon: they
# all name localhost, and OpenSSL picks one certificate by that name).
TRUST: dict[int, ssl.SSLContext] = {}


def trust(*daemons: Daemon) -> None:
    """Call after each start: the port may be new."""
    for daemon in daemons:
        TRUST[daemon.port("upload")] = ssl.create_default_context(cafile=daemon.cert)


def png(width: int, height: int) -> bytes:
    """A real PNG of random pixels (so it does not compress): about 3 bytes a pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\0" + os.urandom(width * 3) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("files"))
    try:
        start_pair(a, b)
        trust(a, b)
        yield a, b
    finally:
        b.stop()
        a.stop()


async def _login(daemon: Daemon, nick: str) -> Client:
    client = Client(daemon.accounts[nick], daemon)
    client.register_plugin("xep_0363")
    client.register_plugin("xep_0066")
    return await client.login()


@pytest.fixture
async def alice(daemons: tuple[Daemon, Daemon]) -> AsyncIterator[Client]:
    client = await _login(daemons[0], "Alice")
    await client.wait(client.peers, 20, "daemon A linked to B")
    yield client
    await client.close()


@pytest.fixture
async def bob(daemons: tuple[Daemon, Daemon]) -> AsyncIterator[Client]:
    client = await _login(daemons[1], "Bob")
    yield client
    await client.close()


async def fetch(url: str, method: str = "GET", data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data,
                                                             headers=headers,
                                                             ssl=_trust(url)) as resp:
        return resp.status, await resp.read()


def _trust(url: str) -> ssl.SSLContext | bool:
    parts = urlsplit(url)
    return TRUST[parts.port or 0] if parts.scheme == "https" else False


async def upload(client: Client, name: str, data: bytes, media_type: str) -> str:
    """XEP-0363 as a client does it: a slot from the service, a PUT; the GET URL.
    (slixmpp's ``upload_file`` PUTs trusting only the system's certificates.)"""
    service = await client.plugin["xep_0363"].find_upload_service(timeout=10)
    assert service is not None
    slot = (await client.plugin["xep_0363"].request_slot(
        service["from"], name, len(data), media_type, timeout=10))["http_upload_slot"]
    status, _ = await fetch(slot["put"]["url"], "PUT", data=data,
                            headers={"Content-Type": media_type})
    assert status == 201
    return str(slot["get"]["url"])


def oob(msg: slixmpp.Message) -> str:
    return msg.xml.findtext(f"{{{OOB_NS}}}x/{{{OOB_NS}}}url") or ""


async def test_a_picture_reaches_bob_from_his_own_daemon(alice: Client, bob: Client,
                                                         daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    picture = png(320, 320)
    assert 300 * 1024 <= len(picture) < 320 * 1024
    url = await upload(alice, "holiday.png", picture, "image/png")
    assert url.startswith(f"https://127.0.0.1:{a.port('upload')}/file/")
    assert url.endswith("/holiday.png")
    assert await fetch(url) == (200, picture)  # Alice's own clients read it back

    msg = alice.make_message(mto=slixmpp.JID(b.accounts["Bob"].contact_jid), mbody=url,
                             mtype="chat")
    msg["oob"]["url"] = url
    msg["id"] = "pic-1"
    msg.send()

    alice_jid = a.accounts["Alice"].contact_jid
    got = await bob.wait(lambda: next((m for m in bob.from_(alice_jid) if oob(m)), None), 60,
                         "the picture at Bob")
    mine = f"https://127.0.0.1:{b.port('upload')}/file/"
    assert oob(got).startswith(mine) and oob(got).endswith("/holiday.png")
    assert str(got["body"]) == oob(got)  # clients without OOB show the link
    assert got["id"] == "pic-1"
    status, data = await fetch(oob(got))
    assert status == 200 and data == picture
    assert await fetch(oob(got).replace("https://", "http://", 1)) == (200, picture)  # one port
    assert alice.errors() == [] and bob.errors() == []
    assert url not in bob.bodies(alice_jid)  # Alice's local URL never travelled as text


async def test_a_file_over_the_limit_is_refused_with_the_limit(alice: Client) -> None:
    service = await alice.plugin["xep_0363"].find_upload_service(timeout=10)
    assert service is not None
    forms = [f for f in service["disco_info"].iterables
             if f["values"].get("FORM_TYPE") == [UPLOAD_NS]]
    assert forms and int(forms[0]["values"]["max-file-size"]) == 16 * 1024 * 1024
    with pytest.raises(FileTooBig):  # the client knows the limit before asking
        await alice.plugin["xep_0363"].upload_file(
            "big.bin", size=17 * 1024 * 1024, input_file=io.BytesIO(b""), timeout=10)
    with pytest.raises(IqError) as refused:  # and the daemon says it to one that asks
        await alice.plugin["xep_0363"].request_slot(service["from"], "big.bin",
                                                    17 * 1024 * 1024, timeout=10)
    err = refused.value.iq["error"]
    assert err["condition"] == "not-acceptable" and err["type"] == "modify"
    assert "16 MiB" in err["text"]
    assert err.xml.findtext(f"{{{UPLOAD_NS}}}file-too-large/{{{UPLOAD_NS}}}max-file-size") \
        == str(16 * 1024 * 1024)


async def test_the_listener_answers_only_live_slots_and_held_files(
        alice: Client, daemons: tuple[Daemon, Daemon]) -> None:
    base = f"https://127.0.0.1:{daemons[0].port('upload')}"
    assert (await fetch(f"{base}/file/{'x' * 32}/a.png"))[0] == 404
    assert (await fetch(f"{base}/upload/{'x' * 32}/a.png", "PUT", data=b"hi"))[0] == 404
    assert (await fetch(f"{base}/", "GET"))[0] == 404
    service = await alice.plugin["xep_0363"].find_upload_service(timeout=10)
    assert service is not None
    slot = (await alice.plugin["xep_0363"].request_slot(
        service["from"], "note.txt", 5, "text/plain", timeout=10))["http_upload_slot"]
    put, get = slot["put"]["url"], slot["get"]["url"]
    assert put.startswith(base) and get.startswith(base)
    assert (await fetch(get))[0] == 404  # nothing there before the PUT
    # A body larger than the slot is cut off, and the slot is gone with it.
    status, _ = await fetch(put, "PUT", data=b"hello, world")
    assert status == 400
    assert (await fetch(put, "PUT", data=b"hello"))[0] == 404  # single use
    slot = (await alice.plugin["xep_0363"].request_slot(
        service["from"], "note.txt", 5, "text/plain", timeout=10))["http_upload_slot"]
    assert (await fetch(slot["put"]["url"], "PUT", data=b"hello"))[0] == 201
    assert await fetch(slot["get"]["url"]) == (200, b"hello")
    get = slot["get"]["url"]
    async with aiohttp.ClientSession() as http, http.get(get, ssl=_trust(get)) as resp:
        assert resp.headers["Content-Type"] == "text/plain"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert (await fetch(slot["put"]["url"], "PUT", data=b"hello"))[0] == 404
    # A page that rebinds a name to 127.0.0.1 sends its own Host: refused.
    status, _ = await fetch(slot["get"]["url"], headers={"Host": "evil.example:80"})
    assert status == 403


async def test_with_sqlite_an_upload_is_kept_encrypted_and_outlives_a_restart(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    a, _ = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("rest"))
    port = free_tcp_port()
    a.config.write_text(a.config.read_text() + f"\n[xmpp]\nupload_port = {port}\n")
    a.start("--storage", "sqlite")
    trust(a)
    try:
        alice = await _login(a, "Alice")
        picture = png(64, 64)
        try:
            url = await upload(alice, "p.png", picture, "image/png")
        finally:
            await alice.close()
        assert url.startswith(f"https://127.0.0.1:{port}/file/")
        kept = [p for p in (a.data_dir / "files").iterdir() if p.is_file()]
        assert len(kept) == 1 and picture[-200:] not in kept[0].read_bytes()
        a.stop()
        a.start("--storage", "sqlite")
        assert await fetch(url) == (200, picture)
    finally:
        a.stop()


async def test_a_picture_to_a_daemon_that_is_off_arrives_by_gossip_when_it_starts(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("off"))
    start_pair(a, b)
    trust(a, b)
    try:
        alice = await _login(a, "Alice")
        try:
            await alice.wait(alice.peers, 20, "daemon A linked to B")
            b.stop()  # Bob's daemon is off: its endpoint refuses, the chunks wait in A's store
            stored = await alice.stored_envelopes()
            picture = png(200, 200)  # about 120 KiB: 2 chunks
            url = await upload(alice, "off.png", picture, "image/png")
            alice.chat(b.accounts["Bob"].contact_jid, url, ident="off-1")
            await alice.wait(lambda: _more(alice, stored + 2), 60, "the chunks in A's store")
        finally:
            await alice.close()
        b.start("--peer", a.p2p)
        trust(b)
        bob = await _login(b, "Bob")
        try:
            alice_jid = a.accounts["Alice"].contact_jid
            got = await bob.wait(lambda: next((m for m in bob.from_(alice_jid) if oob(m)), None),
                                 60, "the picture at Bob")
            assert got["id"] == "off-1"
            assert await fetch(oob(got)) == (200, picture)
        finally:
            await bob.close()
    finally:
        b.stop()
        a.stop()


async def _more(client: Client, count: int) -> bool:
    return await client.stored_envelopes() >= count
