"""``paranoim run`` as an XEP-0114 component of a real Prosody (run as a non-root user).

Daemon A runs with ``--component-domain p2p.localhost`` and no embedded listener, the
secret read from a 0600 file; daemon B is an ordinary daemon peered with A. A slixmpp
client logs in to Prosody as ``alice@localhost``, registers with the gateway (a new
identity on A), adds Bob — an identity on B — by his JID, and the two chat across the
P2P network: Alice's client speaks only to Prosody, Bob's slixmpp client only to B's
embedded listener. The configuration errors a person can make are refused with a
message naming what to fix.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slixmpp import JID

from tests.daemonproc import Paranoim
from tests.interop.drivers import Prosody, SlixClient
from tests.util import wait_until

DOMAIN = "p2p.localhost"
REGISTER = "{jabber:iq:register}"


def secret_file(pim: Paranoim, secret: str) -> Path:
    path = pim.root / "component.secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def component_args(prosody: Prosody, free_port: Callable[[], int], secret: Path,
                   *extra: str) -> list[str]:
    return ["run", "--no-xmpp-listener", "--component-domain", DOMAIN,
            "--component-server", f"127.0.0.1:{prosody.component_port}",
            "--component-secret-file", str(secret), "--web-port", str(free_port()),
            "--p2p-port", str(free_port()), "--difficulty", "8", *extra]


def roster_sub(client: SlixClient, jid: str) -> str:
    return str(client.client_roster[jid]["subscription"]) if jid in client.client_roster else ""


async def register(client: SlixClient, **fields: str) -> Any:
    iq = client.make_iq_set(ito=DOMAIN)
    query = ET.SubElement(iq.xml, REGISTER + "query")
    for name, value in fields.items():
        ET.SubElement(query, REGISTER + name).text = value
    return await iq.send(timeout=15)  # type: ignore[no-untyped-call]


async def test_prosody_user_chats_with_a_p2p_contact_through_the_daemon(
        prosody_component: Prosody, sandboxes: Callable[[str], Paranoim],
        free_port: Callable[[], int]) -> None:
    prosody = prosody_component
    a, b = sandboxes("a"), sandboxes("b")
    da = a.start(*component_args(prosody, free_port,
                                 secret_file(a, prosody.component_secret), "--log-level", "debug"))
    assert da.line("Component").startswith(f"{DOMAIN} on 127.0.0.1:{prosody.component_port}")
    assert not [line for line in da.stdout if line.strip().startswith("XMPP")]
    assert not [line for line in da.stderr if "XMPP listener" in line]  # none runs
    assert "xmpp" not in a.runtime()["ports"]  # type: ignore[operator]
    status = a.run("status").stdout
    assert re.search(rf"Component: {DOMAIN} on \S+, connected, 0 linked users", status)

    res = b.run("id", "new", "Bob")
    assert res.returncode == 0, res.stderr
    bob = dict(re.findall(r"^\s+(Address|JID|Password):\s+(\S+)", res.stdout, re.M))
    p2p = a.runtime()["ports"]["p2p"]  # type: ignore[index]
    b.start("run", "--xmpp-port", str(free_port()), "--web-port", str(free_port()),
            "--p2p-port", str(free_port()), "--difficulty", "8", "--peer", f"127.0.0.1:{p2p}")

    prosody.register("alice", "alice-pw")
    alice = await SlixClient("alice@localhost/test", "alice-pw", port=prosody.c2s_port,
                             ca_cert=prosody.cert.cert).start()
    bob_client = await SlixClient(f"{bob['JID']}/test", bob["Password"],
                                  port=int(b.runtime()["ports"]["xmpp"]),  # type: ignore[index]
                                  ca_cert=b.data_dir / "xmpp-cert.pem").start()
    try:
        # registration makes a new identity on daemon A for alice@localhost
        await register(alice, nick="Alice")
        listed = a.run("id", "list").stdout
        alice_address = re.search(r"Address:\s+(\S+)", listed)[1]  # type: ignore[index]
        assert "Alice" in listed
        # her identity's JID is her own account; one nobody registered has none yet
        assert re.search(r"JID:\s+alice@localhost$", listed, re.M)
        zed = a.run("id", "new", "Zed").stdout
        assert f"none linked yet: register with {DOMAIN}" in zed and "zed@" not in zed
        assert "1 linked users" in a.run("status").stdout

        # Bob accepts Alice on his side; Alice adds Bob from her client, by his JID
        assert b.run("contact", "add", alice_address, "--name", "Alice").returncode == 0
        bob_jid = f"{bob['Address']}@{DOMAIN}"
        alice.update_roster(JID(bob_jid), name="Bob")
        alice.send_presence(pto=bob_jid, ptype="subscribe")
        await wait_until(lambda: roster_sub(alice, bob_jid) == "both", 15,
                         message="Bob in Alice's roster with subscription both")

        alice.send_chat(bob_jid, "hello Bob, from Prosody")
        got = await bob_client.wait_for_message("hello Bob, from Prosody", timeout=30)
        assert got.sender == f"{alice_address}@p2p.localhost"
        bob_client.send_chat(f"{alice_address}@p2p.localhost", "hi Alice, from the P2P side")
        got = await alice.wait_for_message("hi Alice, from the P2P side", timeout=30)
        assert got.sender == bob_jid
    finally:
        await alice.stop()
        await bob_client.stop()

    assert da.stop() == 0
    assert "Stopped." in da.stdout
    assert not [line for line in da.stderr if "Traceback" in line]


def _error(res: Any, code: int, *needles: str) -> None:
    assert res.returncode == code, (res.stdout, res.stderr)
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("paranoim: error: ") and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in last, last


def test_component_configuration_errors(prosody_component: Prosody,
                                        sandboxes: Callable[[str], Paranoim],
                                        free_port: Callable[[], int]) -> None:
    prosody = prosody_component
    pim = sandboxes("a")
    ports = ["--web-port", str(free_port()), "--p2p-port", str(free_port())]
    # no Jabber client could connect at all
    _error(pim.run("run", "--no-xmpp-listener", *ports), 2, "--no-xmpp-listener",
           "--component-domain")
    # (each option's own checks are in tests/integration/test_config.py)
    base = ["run", "--no-xmpp-listener", "--component-domain", DOMAIN, "--component-server",
            f"127.0.0.1:{prosody.component_port}", *ports]
    _error(pim.run(*base), 2, "component_secret", "--component-secret-file",
           "PARANOIM_COMPONENT_SECRET")
    # the server refuses a wrong secret: said in words, nothing left running
    _error(pim.run(*base, env={"PARANOIM_COMPONENT_SECRET": "not-the-secret"}), 1,
           "secret does not match")
    assert not pim.runtime_file.exists()
    # the secret from the environment works (and never appears in the process list)
    d = pim.start(*base, env={"PARANOIM_COMPONENT_SECRET": prosody.component_secret})
    assert d.line("Component").startswith(DOMAIN)
    assert d.stop() == 0
