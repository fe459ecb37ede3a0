"""``paranoim demo`` through the real executable: a slixmpp client logs in with what it
prints and chats with the echo contact across the demo's local P2P nodes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from tests.daemonproc import Paranoim
from tests.interop.drivers import SlixClient


async def test_demo_echoes(tmp_path: Path, free_port: Callable[[], int]) -> None:
    pim = Paranoim(tmp_path)
    try:
        d = await asyncio.to_thread(pim.start, "demo", "--xmpp-port", str(free_port()))
        jid, password = d.line("JID:"), d.line("Password:")
        port = int(d.line("Port:").split()[0])
        echo = d.line("Echo JID:")
        assert d.line("Server:") == "127.0.0.1" and d.line("Certificate:").startswith("SHA-256")
        assert d.line("Web UI:").startswith("http://127.0.0.1:")
        demo_dir = Path(d.stdout[0].rsplit(" ", 1)[1])
        client = SlixClient(jid, password, port=port, ca_cert=demo_dir / "you" / "xmpp-cert.pem")
        await client.start()
        try:
            assert echo in client.client_roster
            client.send_chat(echo, "hello over gossip")
            got = await client.wait_for_message("echo: hello over gossip", sender=echo,
                                                timeout=60)
            assert got.body == "echo: hello over gossip"
        finally:
            await client.stop()
        assert await asyncio.to_thread(d.stop, signal.SIGINT) == 0
        assert not demo_dir.exists()  # the demo leaves nothing behind
    finally:
        pim.cleanup()


def test_demo_port_in_use(tmp_path: Path) -> None:
    import socket

    pim = Paranoim(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        res = pim.run("demo", "--xmpp-port", str(busy.getsockname()[1]))
    assert res.returncode == 3 and "--xmpp-port" in res.stderr
    assert "Traceback" not in res.stderr
