"""kkv-style direct delivery over real loopback sockets: the whole flow and each refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.core import kkv, kkv_records, pow
from bridge.core.envelope import envelope_id
from bridge.core.identity import Identity
from bridge.net.kkv import KkvInbox, KkvServer, KkvSettings, add_kkv_routes
from bridge.net.kkv_client import DirectDeliveryError, deliver_direct
from tests.envelopes import make_envelope
from tests.util import free_tcp_port

BITS = 8


@dataclass
class Served:
    server: KkvServer
    url: str
    port: int
    offset: list[float] = field(default_factory=lambda: [0.0])  # seconds added to the clock

    @property
    def inbox(self) -> KkvInbox:
        return self.server.inbox


@contextlib.asynccontextmanager
async def serve(host: str = "127.0.0.1", **settings: Any) -> AsyncIterator[Served]:
    settings.setdefault("pow_bits", BITS)
    settings.setdefault("envelope_base_bits", 4)
    offset = [0.0]
    app = web.Application(client_max_size=kkv_records.MSG_BODY_LIMIT)
    server = KkvServer(
        KkvInbox(settings.pop("max_messages", 50)),
        KkvSettings(**settings),
        clock=lambda: time.time() + offset[0],
    )
    app.add_routes(server.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, host, port).start()
    try:
        yield Served(server, f"http://127.0.0.1:{port}", port, offset)
    finally:
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def envelope(**kw: Any) -> bytes:
    return make_envelope(now=int(time.time()), base_bits=4, **kw)


async def post(
    http: aiohttp.ClientSession,
    url: str,
    payload: Any = None,
    *,
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    kw: dict[str, Any] = {"headers": headers}
    if data is not None:
        kw["data"] = data
        kw["headers"] = {"Content-Type": "application/json", **(headers or {})}
    else:
        kw["json"] = payload
    async with http.post(url, **kw) as resp:
        return resp.status, await resp.json()


def expect(result: tuple[int, dict[str, Any]], status: int, pattern: str) -> None:
    got_status, body = result
    assert (got_status, set(body)) == (status, {"error"}), body
    assert re.search(pattern, body["error"]), body["error"]


# --- a hand-driven client, to reach each refusal -----------------------------------------


@dataclass
class Steps:
    http: aiohttp.ClientSession
    url: str
    me: Identity = field(default_factory=lambda: Identity.from_seed(os.urandom(32)))

    async def challenge(self) -> tuple[kkv_records.ChallengeResponse, kkv_records.Challenge]:
        async with self.http.post(
            self.url + "/pow", json={"client_pk": kkv_records.b64(self.me.public)}
        ) as r:
            assert r.status == 200, await r.text()
            return kkv_records.ChallengeResponse.from_json(await r.read())

    async def exchange_request(
        self,
        nonce: Callable[[kkv_records.Challenge], int] | None = None,
    ) -> tuple[kkv_records.ExchangeRequest, bytes]:
        resp, c = await self.challenge()
        n = nonce(c) if nonce else pow.solve_range(c.digest, c.bits, 0, 1 << 24)
        assert n is not None
        x = os.urandom(32)
        return kkv.make_exchange(resp, n, self.me.secret_key, x), x

    async def offer(self) -> tuple[kkv_records.SessionOffer, bytes]:
        req, x = await self.exchange_request()
        status, body = await post(self.http, self.url + "/exchange_keys", req.to_json())
        assert status == 200, body
        return kkv_records.SessionOffer.from_json(json.dumps(body).encode()), x

    async def message(self, envelope_raw: bytes, domain_pk: bytes) -> kkv_records.MessageRequest:
        offer, x = await self.offer()
        return kkv.make_message(
            offer,
            domain_pk=domain_pk,
            client_pk=self.me.public,
            client_sk=self.me.secret_key,
            client_x25519_secret=x,
            envelope=envelope_raw,
            now=int(time.time()),
        )


# --- the whole flow ----------------------------------------------------------------------


async def test_status_and_domain_key(served, http):
    async with http.get(served.url + "/status") as r:
        status = await r.json()
    assert status["service"] == "paranoim-kkv" and status["protocol"] == 1
    assert status["inbox"] == {"count": 0, "cap": 50, "full": False}
    assert status["pow_bits"] == BITS and isinstance(status["uptime"], int)
    async with http.get(served.url + "/get_domain_pk") as r:
        pk = kkv_records.unb64((await r.json())["domain_pk"], 32, "domain_pk")
    assert pk == served.server.state.domain_pk


async def test_each_server_start_has_a_new_domain_key():
    a, b = KkvServer(KkvInbox()), KkvServer(KkvInbox())
    assert a.state.domain_pk != b.state.domain_pk


async def test_deliver_read_mark_delete(served, http):
    arrived: list[bytes] = []
    served.inbox.on_envelope(arrived.append)
    raw = envelope(text="direct hello")
    await deliver_direct(http, served.url, raw)

    assert arrived == [raw]
    status, listing = await post(http, served.url + "/get_msg", {})
    assert status == 200 and listing["count"] == 1
    m = listing["messages"][0]
    assert kkv_records.unb64(m["envelope"], None, "envelope", 70000) == raw
    assert m["id"] == envelope_id(raw).hex() and m["read"] is False and m["index"] == 0

    status, one = await post(http, served.url + "/read_msg", {"index": 0, "id": m["id"]})
    assert (status, one["read"]) == (200, True)
    _, again = await post(http, served.url + "/get_msg", {"index": 0})
    assert again["message"]["read"] is True

    expect(
        await post(http, served.url + "/del_msg", {"index": 0, "id": "00" * 32}), 409, "no longer"
    )
    status, gone = await post(http, served.url + "/del_msg", {"index": 0})
    assert (status, gone["count"]) == (200, 0)
    expect(await post(http, served.url + "/get_msg", {"index": 0}), 404, "no message at index 0")


async def test_async_subscriber_and_duplicates(served, http):
    arrived: list[bytes] = []

    async def node_ingest(raw: bytes) -> None:
        await asyncio.sleep(0)
        arrived.append(raw)

    def broken(raw: bytes) -> None:
        raise RuntimeError("a subscriber bug must not fail the delivery")

    served.inbox.on_envelope(broken)
    served.inbox.on_envelope(node_ingest)
    raw = envelope()
    await deliver_direct(http, served.url, raw, Identity.from_seed(os.urandom(32)))
    await deliver_direct(http, served.url, raw)  # the same envelope again: stored once
    assert arrived == [raw] and len(served.inbox) == 1
    assert served.inbox.messages[0].sender_key != b""


async def test_client_uses_a_throwaway_key_by_default(served, http):
    await deliver_direct(http, served.url, envelope())
    await deliver_direct(http, served.url, envelope())
    keys = {m.sender_key for m in served.inbox.messages}
    assert len(keys) == 2


async def test_add_kkv_routes_with_a_prefix(http):
    app = web.Application(client_max_size=kkv_records.MSG_BODY_LIMIT)
    server = add_kkv_routes(
        app, settings=KkvSettings(pow_bits=4, envelope_base_bits=4, prefix="/kkv")
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await deliver_direct(http, f"http://127.0.0.1:{port}/kkv/", envelope())
        assert len(server.inbox) == 1
    finally:
        await runner.cleanup()


# --- refusals ---------------------------------------------------------------------------


async def test_bad_pow(served, http):
    steps = Steps(http, served.url)
    req, _ = await steps.exchange_request(
        nonce=lambda c: next(n for n in range(1000) if pow.work_bits(c.digest, n) < c.bits)
    )
    expect(
        await post(http, served.url + "/exchange_keys", req.to_json()),
        403,
        r"proof of work has \d+ bits; 8 are required",
    )


async def test_expired_challenge(served, http):
    steps = Steps(http, served.url)
    req, _ = await steps.exchange_request()
    served.offset[0] = kkv_records.DEFAULT_CHALLENGE_TTL + 1
    expect(
        await post(http, served.url + "/exchange_keys", req.to_json()),
        410,
        "challenge expired .* ask /pow again",
    )


async def test_replayed_challenge(served, http):
    steps = Steps(http, served.url)
    req, _ = await steps.exchange_request()
    status, _ = await post(http, served.url + "/exchange_keys", req.to_json())
    assert status == 200
    expect(await post(http, served.url + "/exchange_keys", req.to_json()), 409, "already used")


async def test_wrong_signature(served, http):
    steps = Steps(http, served.url)
    req, _ = await steps.exchange_request()
    forged = Identity.from_seed(os.urandom(32)).sign(req.signed_bytes())
    bad = kkv_records.ExchangeRequest(req.token, req.token_signature, req.nonce,
                                      req.client_x25519, forged)
    expect(
        await post(http, served.url + "/exchange_keys", bad.to_json()),
        403,
        "signature does not verify",
    )


async def test_challenge_from_before_a_restart(http):
    async with serve() as old:
        req, _ = await Steps(http, old.url).exchange_request()
    async with serve() as new:
        expect(
            await post(http, new.url + "/exchange_keys", req.to_json()), 403, "another server key"
        )


async def test_message_signature_and_session_reuse(served, http):
    steps = Steps(http, served.url)
    msg = await steps.message(envelope(), served.server.state.domain_pk)
    forged = kkv_records.MessageRequest(msg.session, msg.ciphertext, bytes(64))
    expect(await post(http, served.url + "/msg", forged.to_json()), 403, "signature")
    status, ok = await post(http, served.url + "/msg", msg.to_json())
    assert status == 200 and ok["stored"] is True
    expect(await post(http, served.url + "/msg", msg.to_json()), 404, "no open session")


async def test_envelope_that_fails_its_checks(served, http):
    steps = Steps(http, served.url)
    msg = await steps.message(b"\x00" * 338, served.server.state.domain_pk)
    expect(
        await post(http, served.url + "/msg", msg.to_json()),
        422,
        "the envelope was refused: envelope version 0",
    )
    assert len(served.inbox) == 0


async def test_oversize_bodies(served, http):
    big = b'{"client_pk": "' + b"A" * 5000 + b'"}'
    expect(await post(http, served.url + "/pow", data=big), 413, "exceeds 4096")

    async def chunks():  # no Content-Length: the bound holds while reading
        for _ in range(20):
            yield b" " * 8192

    expect(
        await post(http, served.url + "/msg", data=chunks()),
        413,
        f"exceeds {kkv_records.MSG_BODY_LIMIT} bytes",
    )


async def test_inbox_full(http):
    async with serve(max_messages=1) as s:
        await deliver_direct(http, s.url, envelope())
        with pytest.raises(DirectDeliveryError, match="inbox is full") as info:
            await deliver_direct(http, s.url, envelope())
        assert info.value.status == 503
        expect(
            await post(
                http,
                s.url + "/pow",
                {"client_pk": kkv_records.b64(Identity.from_seed(os.urandom(32)).public)},
            ),
            503,
            r"inbox is full \(1 messages\)",
        )


async def test_inbox_fills_between_exchange_and_message(http):
    async with serve(max_messages=1) as s:
        msg = await Steps(http, s.url).message(envelope(), s.server.state.domain_pk)
        await deliver_direct(http, s.url, envelope())
        expect(await post(http, s.url + "/msg", msg.to_json()), 503, "inbox is full")


async def test_malformed_requests(served, http):
    expect(await post(http, served.url + "/pow", data=b"{"), 400, "not valid JSON")
    expect(await post(http, served.url + "/pow", {"client_pk": 5}), 400, "must be a str")
    expect(await post(http, served.url + "/pow", {"client_pk": "AAAA"}), 400, "32 bytes")
    expect(
        await post(http, served.url + "/pow", {"client_pk": kkv_records.b64(bytes(32))}),
        403, "small-order",
    )
    async with http.post(
        served.url + "/pow", data=b"{}", headers={"Content-Type": "text/plain"}
    ) as r:
        assert r.status == 415 and "application/json" in (await r.json())["error"]
    async with http.get(served.url + "/msg") as r:
        assert (r.status, r.headers["Allow"]) == (405, "POST")
        assert "accepts POST only" in (await r.json())["error"]


# --- the read endpoints answer this machine only --------------------------------------------


def _non_loopback_ipv4() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=5
        ).stdout
        for addr in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)", out):
            if not addr.startswith("127."):
                return addr
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        addr = s.getsockname()[0]
        return None if addr.startswith("127.") else addr
    return None


async def test_read_endpoints_refuse_a_non_loopback_peer(http):
    addr = _non_loopback_ipv4()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    async with serve(host="0.0.0.0") as s:  # a remote-looking peer needs it
        url = f"http://{addr}:{s.port}"
        for path in ("/get_msg", "/read_msg", "/del_msg"):
            expect(
                await post(http, url + path, {"index": 0}), 403, "only requests from this machine"
            )
        # the public endpoints answer it
        async with http.get(url + "/status") as r:
            assert r.status == 200
        # a spoofed forwarding header changes nothing
        expect(
            await post(
                http,
                url + "/get_msg",
                {},
                headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"},
            ),
            403,
            "only requests from this machine",
        )


async def test_read_endpoints_refuse_a_foreign_host_name(served, http):
    expect(
        await post(
            http, served.url + "/get_msg", {}, headers={"Host": f"attacker.example:{served.port}"}
        ),
        403,
        "Host header",
    )
    status, _ = await post(
        http, served.url + "/get_msg", {}, headers={"Host": f"localhost:{served.port}"}
    )
    assert status == 200


async def test_read_endpoints_refuse_the_onion_port(http):
    # Tor forwards onion clients from 127.0.0.1: the port it forwards to is remote.
    async with serve() as s:
        app = web.Application()
        app.add_routes(s.server.routes())
        runner = web.AppRunner(app)
        await runner.setup()
        onion_port = free_tcp_port()
        await web.TCPSite(runner, "127.0.0.1", onion_port).start()
        s.server.mark_onion_port(onion_port)
        try:
            expect(
                await post(http, f"http://127.0.0.1:{onion_port}/get_msg", {}),
                403,
                "only requests from this machine",
            )
            status, _ = await post(http, s.url + "/get_msg", {})
            assert status == 200
        finally:
            await runner.cleanup()


# --- the client's own refusals ----------------------------------------------------------------


async def test_client_refuses_expensive_challenges(http):
    async with serve(pow_bits=30) as s:
        with pytest.raises(DirectDeliveryError, match=r"asks 30 bits .* at most 20"):
            await deliver_direct(http, s.url, envelope(), max_bits=20)


async def test_client_reports_an_unreachable_endpoint(http):
    port = free_tcp_port()
    with pytest.raises(DirectDeliveryError, match=f"cannot connect to 127.0.0.1:{port}"):
        await deliver_direct(http, f"http://127.0.0.1:{port}", envelope())


async def test_client_refuses_onion_without_tor(http):
    with pytest.raises(DirectDeliveryError, match="enable Tor"):
        await deliver_direct(http, "http://" + "a" * 56 + ".onion:45069", envelope())


async def test_client_times_out_on_a_silent_endpoint(http):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DirectDeliveryError, match=r"longer than 0\.5 s"):
            await deliver_direct(http, f"http://127.0.0.1:{port}", envelope(), timeout=0.5)
    finally:
        srv.close()


async def test_public_and_local_endpoints_on_separate_apps(http):
    # With Tor, the app the onion forwards to serves only the public endpoints.
    server = KkvServer(KkvInbox(), KkvSettings(pow_bits=4, envelope_base_bits=4))
    public_app, local_app = web.Application(), web.Application()
    public_app.add_routes(server.routes(local=False))
    local_app.add_routes(server.routes(public=False))
    runners = []
    ports = []
    for app in (public_app, local_app):
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_tcp_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        ports.append(port)
    try:
        published: list[bytes] = []

        async def publish(raw: bytes) -> object:  # like Node.publish: returns the Envelope
            published.append(raw)
            return object()

        server.inbox.on_envelope(publish)
        raw = envelope()
        await deliver_direct(http, f"http://127.0.0.1:{ports[0]}", raw)
        assert published == [raw]
        async with http.post(f"http://127.0.0.1:{ports[0]}/get_msg", json={}) as r:
            assert r.status == 404
        status, listing = await post(http, f"http://127.0.0.1:{ports[1]}/get_msg", {})
        assert (status, listing["count"]) == (200, 1)
        async with http.get(f"http://127.0.0.1:{ports[1]}/status") as r:
            assert r.status == 404
    finally:
        for runner in runners:
            await runner.cleanup()
