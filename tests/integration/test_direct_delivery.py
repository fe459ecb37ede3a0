"""Direct delivery (kkv-style) between real ``paranoim run`` processes.

Three daemons on loopback: A (Alice, announces no endpoint), B (Bob, ``--advertise``
its own P2P address) and C (Carol, ``--advertise`` an address where nothing listens);
B and C dial A. Once the announcements have reached A, Alice's message to Bob goes
straight to B's endpoint (A counts it as sent directly, B as received directly,
without a log line at the default level), and her message to Carol, whose endpoint
is dead, falls back to gossip and still arrives. Each message is read by a slixmpp
client on the receiving daemon.

With ``--tor`` against a real tor started offline (``DisableNetwork 1``), the daemon
makes its onion and announces it as its endpoint: the printed settings and
``paranoim status`` show it, a peer that has the identity as a contact learns it from
the announcement, the local inbox endpoints move to a loopback-only port, and tor
holds the onion for as long as the daemon runs. Tor opens no SOCKS port without a
network, so a delivery *through* Tor to an onion cannot be made offline.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from bridge.control import ControlClient, running_daemon
from bridge.direct import points_here
from bridge.store.keystore import Keystore
from tests.daemonproc import Paranoim, Running
from tests.interop.drivers import DriverError, SlixClient, Tor
from tests.util import wait_until

STATUS_DIRECT = re.compile(
    r"Direct:\s+(?P<endpoint>\S+).*?; (?P<sent>\d+) sent directly, (?P<fallback>\d+) sent "
    r"by gossip after a failed direct attempt, (?P<received>\d+) received directly, "
    r"(?P<known>\d+) contacts with an endpoint")


def run_daemon(pim: Paranoim, free_port: Callable[[], int], *extra: str,
               p2p: int | None = None) -> Running:
    return pim.start("run", "--xmpp-port", str(free_port()), "--web-port", str(free_port()),
                     "--p2p-port", str(p2p or free_port()), "--difficulty", "8", *extra)


def direct(pim: Paranoim) -> dict[str, str]:
    """The direct-delivery line of ``paranoim status``, as a person reads it."""
    res = pim.run("status")
    assert res.returncode == 0, res.stderr
    m = STATUS_DIRECT.search(res.stdout)
    assert m, res.stdout
    return m.groupdict()


async def direct_now(pim: Paranoim) -> dict[str, object]:
    """The same counters over the control channel (quicker to poll than the command)."""
    rt = running_daemon(pim.data_dir)
    assert rt is not None
    status = await ControlClient(rt).call("status")
    return dict(status["direct"])


async def client(pim: Paranoim, ident: dict[str, str]) -> SlixClient:
    ports = pim.runtime()["ports"]
    assert isinstance(ports, dict)
    return await SlixClient(f"{ident['JID']}/test", ident["Password"], port=int(ports["xmpp"]),
                            ca_cert=pim.data_dir / "xmpp-cert.pem").start()


async def test_direct_first_then_gossip_when_the_endpoint_is_dead(
        sandboxes: Callable[[str], Paranoim], free_port: Callable[[], int]) -> None:
    a, b, c = sandboxes("a"), sandboxes("b"), sandboxes("c")
    alice, bob, carol = a.new_identity("Alice"), b.new_identity("Bob"), c.new_identity("Carol")
    a.add_contact(bob["Address"], "Bob")
    a.add_contact(carol["Address"], "Carol")
    b.add_contact(alice["Address"], "Alice")
    c.add_contact(alice["Address"], "Alice")

    da = run_daemon(a, free_port)
    assert da.line("Direct").startswith("not announced")  # nothing to announce: no address
    a_peer = f"127.0.0.1:{a.runtime()['ports']['p2p']}"  # type: ignore[index]
    b_p2p, dead = free_port(), free_port()
    db, _dc = await asyncio.gather(
        asyncio.to_thread(run_daemon, b, free_port, "--peer", a_peer, "--advertise",
                          f"127.0.0.1:{b_p2p}", p2p=b_p2p),
        asyncio.to_thread(run_daemon, c, free_port, "--peer", a_peer, "--advertise",
                          f"127.0.0.1:{dead}"))
    assert db.line("Direct").startswith(f"http://127.0.0.1:{b_p2p} ")
    assert (await direct_now(b))["endpoint"] == f"http://127.0.0.1:{b_p2p}"

    # B's and C's announcements (with their endpoints) reach A by gossip
    async def a_knows(n: int) -> bool:
        return (await direct_now(a))["contacts_with_endpoint"] == n

    await wait_until(lambda: a_knows(2), 30, interval=0.1,
                     message="A knows Bob's and Carol's endpoints")

    ca, cb, cc = await asyncio.gather(client(a, alice), client(b, bob), client(c, carol))
    try:
        ca.send_chat(f"{bob['Address']}@p2p.localhost", "straight to you, Bob")
        got = await cb.wait_for_message("straight to you, Bob", timeout=30)
        assert got.sender == f"{alice['Address']}@p2p.localhost"
        assert (await direct_now(a))["sent"] == 1 and (await direct_now(b))["received"] == 1
        # one message's arrival is not logged at the default level
        assert not any("direct delivery: envelope" in line for line in db.stderr)

        ca.send_chat(f"{carol['Address']}@p2p.localhost", "by gossip, Carol")
        got = await cc.wait_for_message("by gossip, Carol", timeout=30)
        assert got.sender == f"{alice['Address']}@p2p.localhost"
        assert (await direct_now(c))["received"] == 0
        status = a.run("status").stdout  # what a person sees
        counts = STATUS_DIRECT.search(status)
        assert counts and counts["sent"] == "1" and counts["fallback"] == "1", status
        assert "direct delivery failed, sent by gossip instead" in status
        assert f"127.0.0.1:{dead}" in status
    finally:
        await asyncio.gather(ca.stop(), cb.stop(), cc.stop())


def test_endpoints_pointing_here_are_recognised() -> None:
    for url in ("http://127.0.0.1:45069", "http://localhost:1", "http://[::1]:5",
                "http://0.0.0.0:45069", "http://x.localhost:1"):
        assert points_here(url), url
    for url in ("http://192.0.2.7:45069", "http://example.org:1",
                f"http://{'a' * 56}.onion:45069", "not a url"):
        assert not points_here(url), url


def _post(port: int, path: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.interop
async def test_tor_announces_the_onion_as_endpoint(
        sandboxes: Callable[[str], Paranoim], free_port: Callable[[], int], tor: Tor) -> None:
    a, b = sandboxes("a"), sandboxes("b")
    a.write_config(f'[tor]\ncontrol = "127.0.0.1:{tor.control_port}"\n')
    olga = a.new_identity("Olga")
    b.new_identity("Pia")
    b.add_contact(olga["Address"], "Olga")

    da = run_daemon(a, free_port, "--tor")
    onion = da.line("Onion")
    url = f"http://{onion}"
    assert re.fullmatch(r"http://[a-z2-7]{56}\.onion:\d+", url)
    assert da.line("Direct").startswith(f"{url} ")
    assert direct(a)["endpoint"] == url
    ports = a.runtime()["ports"]
    assert isinstance(ports, dict)
    p2p, inbox = int(ports["p2p"]), int(ports["kkv_local"])
    assert da.line("Inbox").startswith(f"127.0.0.1:{inbox} ")

    # the public endpoints answer on the onion's target port; the inbox is read only on
    # the loopback-only port, never on the port every onion client arrives from
    with urllib.request.urlopen(f"http://127.0.0.1:{p2p}/status", timeout=10) as resp:
        assert json.loads(resp.read())["service"] == "paranoim-kkv"
    assert _post(p2p, "/get_msg")[0] == 404  # not served there at all
    status, body = _post(inbox, "/get_msg")
    assert status == 200 and json.loads(body) == {"count": 0, "cap": 50, "messages": []}

    # tor holds the onion for the daemon: its key cannot be used by anyone else now
    key = (a.data_dir / "onion.key").read_text().strip()
    with tor.control() as ctl, pytest.raises(DriverError, match="ADD_ONION"):
        ctl.command(f"ADD_ONION {key} Port=1,127.0.0.1:{free_port()}")

    # a peer with Olga as a contact learns the onion endpoint from her announcement
    db = run_daemon(b, free_port, "--peer", f"127.0.0.1:{p2p}")
    async def b_knows() -> bool:
        return (await direct_now(b))["contacts_with_endpoint"] == 1

    await wait_until(b_knows, 30, interval=0.1, message="B learns Olga's endpoint")
    doc = Keystore(b.data_dir).load()
    assert [c.endpoint for c in doc.identities[0].contacts] == [url]
    assert db.stop() == 0

    assert da.stop() == 0
    with tor.control() as ctl:  # the daemon's control connection closed: the onion is gone
        reply = ctl.command(f"ADD_ONION {key} Port=1,127.0.0.1:{free_port()}")
    assert any(onion.split(".")[0] in line for line in reply)
