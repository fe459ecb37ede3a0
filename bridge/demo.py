"""``paranoim demo``: a private network on this machine, to try a Jabber client at once.

A few P2P nodes on loopback peered with each other, two services with their own
temporary data directories — yours (with the XMPP listener and the web UI) on
the first node, and an echo contact on the last that answers every message with
"echo: <text>" — at a low proof-of-work difficulty. Messages really cross the
nodes by gossip. Everything is removed when the demo stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import socket
import tempfile
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.core.errors import UserError
from bridge.events import ContactsChanged, ContactState, Event, MessageArrived
from bridge.net.node import Node, NodeConfig
from bridge.net.workers import WorkerPool
from bridge.ports import check_port_free, port_error
from bridge.service import Service
from bridge.store.keystore import Keystore
from bridge.tasks import TaskSet
from bridge.xmpp.c2s import C2SServer

DEMO_BITS = 6
PEER_WAIT = 15.0


class EchoBot:
    """Answers every direct message to its identity with "echo: <text>" and a receipt,
    and accepts whoever writes to it."""

    def __init__(self, service: Service, address: str) -> None:
        self.service = service
        self.address = address
        self.tasks = TaskSet("demo echo bot")
        service.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ContactsChanged) and event.owner == self.address and \
                event.contact is not None and event.contact.state is ContactState.PENDING_IN:
            self.service.accept_contact(self.address, event.contact.address)
        elif isinstance(event, MessageArrived) and event.to == self.address and not event.act:
            self.tasks.spawn(self._answer(event), name="echo")

    async def _answer(self, ev: MessageArrived) -> None:
        if ev.receipt_wanted:
            await self.service.send_receipt(self.address, ev.sender, [ev.envelope_id],
                                            [ev.message_id])
        await self.service.send_message(self.address, ev.sender, f"echo: {ev.text}")

    async def close(self) -> None:
        await self.tasks.close()


async def _wait_peered(nodes: list[Node]) -> None:
    async def all_linked() -> None:
        while not all(n.peers() for n in nodes):
            await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(all_linked(), PEER_WAIT)
    except TimeoutError:
        raise UserError("the demo's local nodes did not connect to each other") from None


async def run_demo(*, xmpp_port: int = 5222, web_port: int = 0, nodes: int = 3,
                   out: Callable[[str], None] = print, open_browser: bool = False,
                   ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    if not 2 <= nodes <= 8:
        raise UserError("the demo runs 2 to 8 nodes (--nodes)")
    check_port_free("127.0.0.1", xmpp_port, "XMPP listener", "--xmpp-port")
    check_port_free("127.0.0.1", web_port, "web UI", "--web-port")
    root = Path(tempfile.mkdtemp(prefix="paranoim-demo-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = WorkerPool(2)
    started: list[Node] = []
    services: list[Service] = []
    closers: list[Callable[[], Any]] = []
    try:
        warm = asyncio.ensure_future(pool.warm_up())
        for _ in range(nodes):
            boot = [f"127.0.0.1:{n.port}" for n in started[-2:]]
            node = Node(NodeConfig(host="127.0.0.1", port=0, base_bits=DEMO_BITS,
                                   bootstrap=boot, anti_entropy_interval=1.0,
                                   backoff_min=0.2))
            await node.start()
            started.append(node)
        await warm

        async def service_on(node: Node, name: str) -> Service:
            s = Service(Keystore(root / name), node, pool, base_bits=DEMO_BITS)
            await s.start()
            services.append(s)
            return s

        mine = await service_on(started[0], "you")
        echo_s = await service_on(started[-1], "echo")
        me = await mine.create_identity("Me")
        echo = await echo_s.create_identity("Echo")
        mine.add_contact(me.address, echo_s.invite_link(echo.address), "Echo")
        echo_s.add_contact(echo.address, mine.invite_link(me.address), "Me")
        bot = EchoBot(echo_s, echo.address)
        closers.append(bot.close)

        xmpp = C2SServer(mine, "127.0.0.1", xmpp_port, root / "you", domain="localhost")
        try:
            await xmpp.start()
        except OSError as exc:
            raise port_error(exc, "127.0.0.1", xmpp_port, "XMPP listener", "--xmpp-port") \
                from None
        closers.append(xmpp.close)
        mine.set_xmpp_settings(xmpp.settings())
        web_url = await _start_web(mine, web_port, closers)
        await _wait_peered(started)

        info = {"jid": f"{me.username}@localhost", "password": me.xmpp_password,
                "port": xmpp.port, "fingerprint": xmpp.fingerprint,
                "echo_jid": f"{echo.address}@p2p.localhost", "web_url": web_url,
                "data_dir": str(root)}
        node_ports = ", ".join(str(n.port) for n in started)
        for line in (
            f"ParanoIM demo: {nodes} P2P nodes on 127.0.0.1 (ports {node_ports}), "
            f"proof of work at {DEMO_BITS} bits; temporary data in {root}",
            "",
            "Log in with your Jabber client (Pidgin, Gajim, Dino, profanity…):",
            f"  JID:         {info['jid']}",
            f"  Password:    {info['password']}",
            "  Server:      127.0.0.1",
            f"  Port:        {info['port']}  (STARTTLS: accept the self-signed certificate)",
            f"  Certificate: SHA-256 {info['fingerprint']}",
            "",
            "Your contact Echo answers every message with \"echo: <text>\":",
            f"  Echo JID:    {info['echo_jid']}",
            "",
            f"Web UI: {web_url}",
            "Ready. Press Ctrl-C to stop.",
        ):
            out(line)
        if ready is not None:
            ready(info)
        if open_browser:
            await asyncio.to_thread(webbrowser.open, web_url)
        await stop.wait()
        out("Stopping…")
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        for s in services:
            await s.stop()
        for n in started:
            await n.stop()
        pool.close()
        shutil.rmtree(root, ignore_errors=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    out("Stopped.")


async def _start_web(service: Service, port: int, closers: list[Callable[[], Any]]) -> str:
    from webui.app import create_app

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise port_error(exc, "127.0.0.1", port, "web UI", "--web-port") from None
    port = int(sock.getsockname()[1])
    token = secrets.token_urlsafe(24)
    app = create_app(service, access_token=token,
                     allowed_hosts={f"127.0.0.1:{port}", f"localhost:{port}"})
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    closers.append(runner.cleanup)
    return f"http://127.0.0.1:{port}/?token={token}"
