"""The drivers work against the real programs: each client logs in to a real Prosody and
exchanges a message with a slixmpp client; tor answers ADD_ONION offline; microsocks carries
an aiohttp request; Chromium renders a local page to a screenshot."""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.interop.drivers import (
    DriverTimeout,
    Finch,
    Microsocks,
    Poezio,
    Profanity,
    ProgramMissing,
    Prosody,
    SlixClient,
    TmuxSession,
    Tor,
)
from tests.util import require_programs, skip_or_fail, wait_until

pytestmark = pytest.mark.interop

CLIENTS: dict[str, type[Profanity | Poezio | Finch]] = {
    "profanity": Profanity,
    "poezio": Poezio,
    "finch": Finch,
}


def text_app(body: str, content_type: str = "text/plain") -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


# --- tmux ------------------------------------------------------------------------------


async def test_tmux_session_types_reads_and_times_out() -> None:
    require_programs("tmux")
    with TmuxSession(["/bin/cat"], name="cat") as session:
        session.send_literal("hello tmux")
        session.send_keys("Enter")
        # cat echoes the line once as typed (the tty) and once as its output.
        await session.wait_for(re.compile(r"hello tmux\s+hello tmux"), timeout=10)
        assert session.is_alive()
        with pytest.raises(DriverTimeout, match="never shown"):
            await session.wait_for("never shown", timeout=0.3)
        session.send_keys("C-d")  # end of input: cat exits 0, the pane stays readable
        await wait_until(lambda: not session.is_alive(), timeout=10, message="cat to exit")
        assert session.exit_status() in (0, None)
        assert "hello tmux" in session.capture_pane()


# --- Prosody and the three terminal clients -------------------------------------------


async def test_prosody_serves_two_slixmpp_clients(prosody: Prosody) -> None:
    prosody.register("alice", "alice-pw")
    prosody.register("bob", "bob-pw")
    alice = await SlixClient(
        "alice@localhost", "alice-pw", port=prosody.c2s_port, ca_cert=prosody.cert.cert
    ).start()
    bob = await SlixClient(
        "bob@localhost", "bob-pw", port=prosody.c2s_port, ca_cert=prosody.cert.cert
    ).start()
    try:
        alice.send_chat("bob@localhost", "hello bob")
        got = await bob.wait_for_message("hello bob", sender="alice@localhost")
        assert got.body == "hello bob"
    finally:
        await alice.stop()
        await bob.stop()


async def test_prosody_component_pushes_roster_through_privileges(
    prosody_component: Prosody,
) -> None:
    """slixmpp's ComponentXMPP logs in with the secret, receives the XEP-0356 privilege
    advertisement from mod_privilege, and a set_roster push reaches a connected client."""
    from slixmpp import ComponentXMPP

    server = prosody_component
    assert server.component == "p2p.localhost"
    server.register("human", "human-pw")
    human = await SlixClient(
        "human@localhost", "human-pw", port=server.c2s_port, ca_cert=server.cert.cert
    ).start()
    component = ComponentXMPP(
        server.component, server.component_secret, "127.0.0.1", server.component_port
    )
    component.register_plugin("xep_0356")
    advertised = asyncio.Event()
    component.add_event_handler("privileges_advertised", lambda *_: advertised.set())
    component.connect()
    try:
        await asyncio.wait_for(advertised.wait(), 15)
        await component.plugin["xep_0356"].set_roster(
            "human@localhost",
            {"someone@p2p.localhost": {"name": "Petname", "subscription": "both", "groups": []}},
            timeout=10,
        )
        roster = human.client_roster
        await wait_until(
            lambda: "someone@p2p.localhost" in roster,
            timeout=10,
            message="roster push at the client",
        )
        assert roster["someone@p2p.localhost"]["name"] == "Petname"
    finally:
        component.disconnect()
        await human.stop()


@pytest.mark.parametrize("name", list(CLIENTS))
async def test_client_chats_with_slixmpp_through_prosody(prosody: Prosody, name: str) -> None:
    client_cls = CLIENTS[name]
    try:
        human = client_cls(
            "human@localhost", "human-pw", port=prosody.c2s_port, cert_pem=prosody.cert.pem
        )
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    prosody.register("human", "human-pw")
    prosody.register("bot", "bot-pw")
    token = secrets.token_hex(4)
    with human:
        await human.wait_logged_in(timeout=30)
        bot = await SlixClient(
            "bot@localhost", "bot-pw", port=prosody.c2s_port, ca_cert=prosody.cert.cert
        ).start()
        try:
            bot.send_chat("human@localhost", f"ping {token} from the bot")
            got = await human.wait_for_message(f"ping {token}", timeout=20)
            assert "from the bot" in got.body
            await human.send("bot@localhost", f"pong {token} from {name}")
            reply = await bot.wait_for_message(f"pong {token}", sender="human@localhost")
            assert reply.body == f"pong {token} from {name}"
        finally:
            await bot.stop()


# --- tor, SOCKS, Chromium --------------------------------------------------------------


def test_tor_add_onion_answers_offline(tor: Tor) -> None:
    assert tor.control_port is not None
    assert tor.cookie_path.stat().st_size == 32
    with tor.control() as ctl:
        service_id, private_key = ctl.add_onion(target_port=45069)
        assert re.fullmatch(r"[a-z2-7]{56}", service_id), service_id
        assert private_key.startswith("ED25519-V3:")
        assert any(service_id in line for line in ctl.command("GETINFO onions/current"))


@pytest.mark.parametrize("auth", [False, True], ids=["open", "user-pass"])
async def test_microsocks_carries_aiohttp_request(auth: bool, free_port: Any) -> None:
    from aiohttp_socks import ProxyConnector

    try:
        proxy = Microsocks(user="u", password="p4ss") if auth else Microsocks()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    app = text_app("through socks")
    port = free_port()
    runner = await serve(app, port)
    try:
        with proxy:
            connector = ProxyConnector.from_url(proxy.url, rdns=True)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(f"http://127.0.0.1:{port}/") as resp,
            ):
                assert resp.status == 200
                assert await resp.text() == "through socks"
            if auth:
                bad = ProxyConnector.from_url(f"socks5://u:wrong@127.0.0.1:{proxy.port}")
                async with aiohttp.ClientSession(connector=bad) as session:
                    with pytest.raises(Exception, match=r"(?i)auth|socks"):
                        await session.get(f"http://127.0.0.1:{port}/")
    finally:
        await runner.cleanup()


@pytest.mark.web
async def test_chromium_renders_local_page(page: Any, free_port: Any) -> None:
    from tests.interop.drivers.chromium import screenshot

    html = "<!doctype html><title>ParanoIM probe</title><h1 id=h>Rendered here</h1>"
    app = text_app(html, "text/html")
    port = free_port()
    runner = await serve(app, port)
    try:
        await page.goto(f"http://127.0.0.1:{port}/")
        assert await page.title() == "ParanoIM probe"
        assert await page.text_content("#h") == "Rendered here"
        path: Path = await screenshot(page, "driver-chromium-probe")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000
    finally:
        await runner.cleanup()
