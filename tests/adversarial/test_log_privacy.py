"""What a daemon's output gives away: at the default log level, nothing of its peers.

Two real ``paranoim run`` daemons on loopback, each announcing its endpoint for
direct delivery; B dials A. While they link, deliver directly and chat through
slixmpp clients, everything A prints on stdout and stderr (what journald keeps
under ``paranoim service install``) is collected: it must name none of B's ports,
no loopback peer address past the ready lines, none of A's tokens, no envelope
id (no run of hex digits) and no request line of the P2P app's endpoints. B runs
at ``--log-level debug`` and so shows that the same events are there to be logged.

The two per-start secrets are separate: the control channel refuses the web UI's
token, and the web UI refuses the control channel's.
"""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace

import pytest

from bridge.control import ControlClient, running_daemon
from bridge.core.errors import UserError
from tests.daemonproc import READY, Paranoim, Running
from tests.interop.drivers import SlixClient
from tests.util import wait_until

HEX_RUN = re.compile(r"[0-9a-f]{12,}", re.I)


def run_daemon(pim: Paranoim, free_port: Callable[[], int], *extra: str) -> Running:
    p2p = free_port()
    return pim.start("run", "--xmpp-port", str(free_port()), "--web-port", str(free_port()),
                     "--p2p-port", str(p2p), "--difficulty", "8",
                     "--advertise", f"127.0.0.1:{p2p}", *extra)


async def status(pim: Paranoim) -> dict[str, object]:
    rt = running_daemon(pim.data_dir)
    assert rt is not None
    return dict(await ControlClient(rt).call("status"))


async def client(pim: Paranoim, ident: dict[str, str]) -> SlixClient:
    ports = pim.runtime()["ports"]
    assert isinstance(ports, dict)
    return await SlixClient(f"{ident['JID']}/test", ident["Password"], port=int(ports["xmpp"]),
                            ca_cert=pim.data_dir / "xmpp-cert.pem").start()


def web_link(pim: Paranoim) -> str:
    res = pim.run("open", "--print")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


async def test_default_log_names_no_peer_no_message_no_token(
        sandboxes: Callable[[str], Paranoim], free_port: Callable[[], int]) -> None:
    a, b = sandboxes("a"), sandboxes("b")
    alice, bob = a.new_identity("Alice"), b.new_identity("Bob")
    a.add_contact(bob["Address"], "Bob")
    b.add_contact(alice["Address"], "Alice")
    da = run_daemon(a, free_port)
    a_ports = a.runtime()["ports"]
    assert isinstance(a_ports, dict)
    db = run_daemon(b, free_port, "--peer", f"127.0.0.1:{a_ports['p2p']}",
                    "--log-level", "debug")
    b_ports = b.runtime()["ports"]
    assert isinstance(b_ports, dict)

    async def link_and_endpoints() -> bool:
        sa, sb = await status(a), await status(b)
        da_, db_ = sa["direct"], sb["direct"]
        assert isinstance(da_, dict) and isinstance(db_, dict)
        return bool(sa["peers"]) and da_["contacts_with_endpoint"] == 1 \
            and db_["contacts_with_endpoint"] == 1
    await wait_until(link_and_endpoints, 60, interval=0.1,
                     message="A and B link and learn each other's endpoints")

    ca, cb = await asyncio.gather(client(a, alice), client(b, bob))
    try:
        cb.send_chat(f"{alice['Address']}@p2p.localhost", "to Alice, directly")
        await ca.wait_for_message("to Alice, directly", timeout=30)
        ca.send_chat(f"{bob['Address']}@p2p.localhost", "and back to Bob")
        await cb.wait_for_message("and back to Bob", timeout=30)
    finally:
        await asyncio.gather(ca.stop(), cb.stop())
    sa = await status(a)
    direct = sa["direct"]
    assert isinstance(direct, dict) and direct["received"] >= 1 and direct["sent"] >= 1

    secrets = [str(a.runtime()["control_token"]), web_link(a).rsplit("=", 1)[1]]
    assert da.stop() == 0 and db.stop() == 0

    # B, at DEBUG, logged what A at the default level must not: the events took place
    assert any("direct delivery: envelope" in line for line in db.stderr)
    ready = da.stdout.index(READY)
    after_ready = da.stdout[ready + 1:] + da.stderr
    everything = "\n".join(da.stdout + da.stderr)
    for port in set(b_ports.values()):
        assert f":{port}" not in everything, f"B's port {port} in A's output"
    for line in after_ready:
        assert "127.0.0.1" not in line and "localhost:" not in line, line
        assert not HEX_RUN.search(line), line
        # no request line either: no access log tells when a peer asked for what
        assert not any(p in line for p in ("/p2p", "/pow", "/exchange_keys", "/msg",
                                           "aiohttp.access")), line
    for secret in secrets:
        assert secret not in everything
    assert "token=" not in everything
    assert not any("Traceback" in line for line in da.stderr)


async def test_control_and_web_ui_tokens_are_separate(
        sandboxes: Callable[[str], Paranoim], free_port: Callable[[], int]) -> None:
    a = sandboxes("a")
    run_daemon(a, free_port)
    rt = running_daemon(a.data_dir)
    assert rt is not None
    link = web_link(a)
    web_token = link.rsplit("=", 1)[1]
    assert web_token != rt.token

    # the control channel: its own token works, the web UI's is refused
    assert (await ControlClient(rt).call("status"))["pid"] == rt.pid
    for wrong in (web_token, ""):
        with pytest.raises(UserError, match="wrong or missing control token"):
            await ControlClient(replace(rt, token=wrong)).call("status")

    # the web UI: its own token opens a session, the control channel's does not
    base = link.split("?", 1)[0]

    def get(url: str) -> int:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        try:
            with opener.open(url, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
    assert await asyncio.to_thread(get, f"{base}?token={rt.token}") == 403
    assert await asyncio.to_thread(get, link) == 200
