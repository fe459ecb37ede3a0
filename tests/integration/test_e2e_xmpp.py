"""End to end: two real daemons peered on loopback, a slixmpp client on each.

Daemon A holds Alice; daemon B holds Bob, Carol and Mallory. Each is a
``paranoim run`` process with its own data dir, B started with ``--peer`` A, PoW
difficulty 1. Alice knows Bob and Mallory and they know her (``paranoim contact
add`` before the start); Carol is a stranger to her. Every client logs in
over STARTTLS and trusts only its daemon's self-signed certificate. Everything a
message crosses is real: the XMPP listener, the gateway, the service, sealing and
PoW in the worker pool, the node, gossip over the WebSocket link, and back.

The daemons are shared by the tests of this module (starting them costs a few
seconds); each test logs its own clients in and uses its own texts, so a test does
not depend on another having run. Restarts are in ``test_e2e_xmpp_restart.py``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import slixmpp

from bridge.core.identity import Identity
from bridge.core.invite import parse_invite
from bridge.core.seal import MAX_PAYLOAD
from tests.integration.e2e_support import (
    BLOCKING_NS,
    BOT,
    CONTACTS,
    MUC_NS,
    ROOM,
    Account,
    Client,
    Daemon,
    IqError,
    has_delay,
    pair_from_template,
    start_pair,
)

pytestmark = pytest.mark.slow
_unique = itertools.count(1)


def token() -> str:
    """A text no other test sends."""
    return f"{time.monotonic_ns():x}-{next(_unique)}"


@dataclass
class Network:
    a: Daemon
    b: Daemon
    peered: bool = False

    def account(self, nick: str) -> Account:
        return {**self.a.accounts, **self.b.accounts}[nick]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("e2e"))
    try:
        start_pair(a, b)
        yield Network(a, b)
    finally:
        b.stop()
        a.stop()


async def _client(network: Network, nick: str) -> AsyncIterator[Client]:
    account = network.account(nick)
    daemon = network.a if nick in network.a.accounts else network.b
    client = await Client(account, daemon).login()
    try:
        if not network.peered:  # once: the link between A and B is up before anything is sent
            await client.wait(client.peers, 20, f"daemon {daemon.name} linked to its peer")
            network.peered = True
        yield client
    finally:
        await client.close()


@pytest.fixture
async def alice(network: Network) -> AsyncIterator[Client]:
    async for client in _client(network, "Alice"):
        yield client


@pytest.fixture
async def bob(network: Network) -> AsyncIterator[Client]:
    async for client in _client(network, "Bob"):
        yield client


@pytest.fixture
async def carol(network: Network) -> AsyncIterator[Client]:
    async for client in _client(network, "Carol"):
        yield client


@pytest.fixture
async def mallory(network: Network) -> AsyncIterator[Client]:
    async for client in _client(network, "Mallory"):
        yield client


# --- chat ---------------------------------------------------------------------------------


async def test_twenty_messages_each_way_arrive_in_order_once(alice: Client, bob: Client,
                                                             network: Network) -> None:
    a, b = network.account("Alice"), network.account("Bob")
    run = token()
    to_bob = [f"a→b {run} #{n:02}" for n in range(20)]
    to_alice = [f"b→a {run} #{n:02}" for n in range(20)]
    for one, other in zip(to_bob, to_alice, strict=True):  # both ways at once, no waiting
        alice.chat(b.contact_jid, one)
        bob.chat(a.contact_jid, other)

    def mine(client: Client, jid: str) -> list[str]:
        return [t for t in client.bodies(jid) if run in t]

    await bob.wait(lambda: len(mine(bob, a.contact_jid)) >= 20, 60, "20 messages at Bob")
    await alice.wait(lambda: len(mine(alice, b.contact_jid)) >= 20, 60, "20 messages at Alice")
    # A last message each way: what was sent before it has had every chance to arrive twice.
    alice.chat(b.contact_jid, f"end {run}")
    bob.chat(a.contact_jid, f"end {run}")
    await bob.wait_body(a.contact_jid, f"end {run}")
    await alice.wait_body(b.contact_jid, f"end {run}")
    assert mine(bob, a.contact_jid) == [*to_bob, f"end {run}"]
    assert mine(alice, b.contact_jid) == [*to_alice, f"end {run}"]
    assert alice.errors() == [] and bob.errors() == []


async def test_receipt_comes_back_for_the_message_id(alice: Client, bob: Client,
                                                     network: Network) -> None:
    a, b = network.account("Alice"), network.account("Bob")
    text = f"please confirm {token()}"
    ident = alice.chat(b.contact_jid, text, receipt=True, ident=f"rcpt-{token()}")
    at_bob = await bob.wait_body(a.contact_jid, text)
    assert at_bob["request_receipt"], "Bob's client is asked for a receipt"
    # Bob's slixmpp acks by itself (xep_0184 auto_ack); the ack crosses the network back.
    await alice.wait(lambda: ident in alice.receipts(b.contact_jid), 30,
                     f"<received id={ident!r}/> at Alice")
    assert alice.receipts(b.contact_jid).count(ident) == 1


# --- contacts -----------------------------------------------------------------------------


async def test_stranger_writes_request_is_held_until_accepted(alice: Client, carol: Client,
                                                              network: Network) -> None:
    a, c = network.account("Alice"), network.account("Carol")
    text = f"hello Alice, this is Carol {token()}"
    carol.chat(a.contact_jid, text)

    def subscribe() -> slixmpp.Presence | None:
        return next((p for p in alice.presences if p["type"] == "subscribe"
                     and p["from"].bare == c.contact_jid), None)

    await alice.wait(subscribe, 30, "a subscription request from Carol")
    # The request and the message are handed over together; the message is held.
    await alice.ping_server()
    assert alice.from_(c.contact_jid) == [], "a stranger's message waits for the answer"
    assert alice.client_roster[c.contact_jid]["subscription"] == "none"

    alice.send_presence(pto=c.contact_jid, ptype="subscribed")  # the client's "accept"
    got = await alice.wait_body(c.contact_jid, text)
    assert got["from"].bare == c.contact_jid
    await alice.wait(lambda: alice.client_roster[c.contact_jid]["subscription"] == "both", 10,
                     "Carol in Alice's roster with subscription both")
    states = {jid: state for _name, state, jid in network.a.contact_list("Alice")}
    assert states[c.contact_jid] == "accepted"


async def test_roster_set_adds_a_contact_and_a_typo_is_explained(alice: Client,
                                                                 network: Network) -> None:
    dave = Identity.from_seed(token().encode().ljust(32, b"-")[:32]).address  # someone new
    dave_jid = f"{dave}@{CONTACTS}"
    await alice.roster_set(dave_jid, "Dave from work")
    await alice.wait(lambda: alice.client_roster[dave_jid]["subscription"] == "both", 10,
                     "the roster push for Dave")
    assert alice.client_roster[dave_jid]["name"] == "Dave from work"
    assert ("Dave from work", "accepted", dave_jid) in network.a.contact_list("Alice")

    typo = dave[:10] + ("a" if dave[10] != "a" else "b") + dave[11:]
    with pytest.raises(IqError) as refused:
        await alice.roster_set(f"{typo}@{CONTACTS}", "Dave (typo)")
    error = refused.value.iq["error"]
    assert error["condition"] == "jid-malformed"
    assert "checksum" in error["text"] and "mistyped" in error["text"]
    assert all(typo not in row[2] for row in network.a.contact_list("Alice"))


async def test_blocked_contact_never_gets_through(alice: Client, bob: Client, mallory: Client,
                                                  network: Network) -> None:
    a, b, m = (network.account(n) for n in ("Alice", "Bob", "Mallory"))
    run = token()
    mallory.chat(a.contact_jid, f"before the block {run}")
    await alice.wait_body(m.contact_jid, f"before the block {run}", 30)

    await alice.plugin["xep_0191"].block([slixmpp.JID(m.contact_jid)], timeout=10)
    blocked = await alice.plugin["xep_0191"].get_blocked(timeout=10)
    assert m.contact_jid in [i.get("jid") for i in blocked.xml.iter(f"{{{BLOCKING_NS}}}item")]

    stored_before = await mallory.stored_envelopes()
    mallory.chat(a.contact_jid, f"after the block {run}")
    # Mallory's envelope is on B's node before Bob writes, so it travels first ...
    await mallory.wait(lambda: _grew(mallory, stored_before), 30, "Mallory's envelope on B")
    bob.chat(a.contact_jid, f"later, from Bob {run}")
    await alice.wait_body(b.contact_jid, f"later, from Bob {run}", 30)
    # ... and A's node holds at least everything B held then (Mallory's envelope too).
    b_count = await mallory.stored_envelopes()
    await alice.wait(lambda: _at_least(alice, b_count), 30, "A's node caught up with B")
    await alice.ping_server()
    assert f"after the block {run}" not in alice.bodies(m.contact_jid)
    assert alice.client_roster[m.contact_jid]["subscription"] == "none"


async def _grew(client: Client, before: int) -> bool:
    return await client.stored_envelopes() > before


async def _at_least(client: Client, count: int) -> bool:
    return await client.stored_envelopes() >= count


# --- offline ------------------------------------------------------------------------------


async def test_offline_recipient_gets_everything_on_reconnect(alice: Client, carol: Client,
                                                              network: Network) -> None:
    """Bob's client goes away; what Alice sends waits on B and comes at his next login."""
    a, b = network.account("Alice"), network.account("Bob")
    run = token()
    texts = [f"while you were away {run} #{n}" for n in range(3)]
    # Carol's client is on B too: through the bot it shows B's node, while Bob is away.
    for text in texts:  # one envelope each: written while none is being sealed
        stored_before = await carol.stored_envelopes()
        alice.chat(b.contact_jid, text)
        await carol.wait(lambda n=stored_before: _at_least(carol, n + 1), 30,
                         "Alice's envelope on B")

    bob = Client(b, network.b, resource="back")
    try:
        await bob.login()
        await bob.wait(lambda: len([t for t in bob.bodies(a.contact_jid) if run in t]) >= 3, 20,
                       "the three messages after login")
        await bob.ping_server()
        got = [m for m in bob.from_(a.contact_jid) if run in str(m["body"])]
        assert [str(m["body"]) for m in got] == texts
        assert all(has_delay(m) for m in got), "held messages carry a XEP-0203 delay stamp"
    finally:
        await bob.close()


# --- the public room ----------------------------------------------------------------------


async def _join(client: Client, nick: str) -> None:
    presence = client.make_presence(pto=slixmpp.JID(f"{ROOM}/{nick}"))
    presence.xml.append(slixmpp.ET.Element(f"{{{MUC_NS}}}x"))
    presence.send()

    def joined() -> bool:
        return any(p["from"] == f"{ROOM}/{nick}" and 110 in p["muc"]["status_codes"]
                   for p in client.presences)

    await client.wait(joined, 10, f"self-presence in {ROOM} as {nick}")


async def test_public_room_carries_messages_with_nicks(alice: Client, bob: Client,
                                                       network: Network) -> None:
    a, b = network.account("Alice"), network.account("Bob")
    await _join(alice, "alice-in-room")
    await _join(bob, "bob-in-room")
    text = f"hello room {token()}"
    msg = alice.make_message(mto=slixmpp.JID(ROOM), mbody=text, mtype="groupchat")
    msg.send()
    # Alice's own copy comes at once, under the nick she chose.
    await alice.wait_body(f"{ROOM}/alice-in-room", text, 10, mtype="groupchat")

    def at_bob() -> slixmpp.Message | None:
        return next((m for m in bob.messages if m["type"] == "groupchat"
                     and m["body"] == text), None)

    got = await bob.wait(at_bob, 30, "Alice's room message at Bob")
    # The network carries the identity's nick and the address prefix, not the room nick.
    assert got["from"].bare == ROOM
    assert got["from"].resource == f"Alice [{a.address[:6]}]"
    assert any(p["from"] == got["from"] for p in bob.presences), "occupant presence first"

    reply = f"hello Alice {token()}"
    bob.make_message(mto=slixmpp.JID(ROOM), mbody=reply, mtype="groupchat").send()
    back = await alice.wait_body(f"{ROOM}/Bob [{b.address[:6]}]", reply, 30, "groupchat")
    assert back["from"].bare == ROOM
    assert len([m for m in alice.messages if m["body"] == text]) == 1, "no echo from the network"


# --- the gateway bot ----------------------------------------------------------------------


async def test_bot_status_invite_and_add(alice: Client, mallory: Client,
                                         network: Network) -> None:
    status = await alice.bot("status")
    assert "peers connected: 1\n" in status
    assert "storage: memory" in status

    link = (await mallory.bot("invite")).split()[-1]
    invite = parse_invite(link)
    m = network.account("Mallory")
    assert invite.address == m.address and invite.nick == "Mallory"
    # The link says how to reach the network: B's node or the peers B is configured with.
    assert invite.peers and set(invite.peers) <= {network.a.p2p, network.b.p2p}

    # Mallory is a contact already (Carol must stay a stranger for the request test):
    # adding her link again gives her the new petname.
    petname = f"Mallory via link {next(_unique)}"
    answer = await alice.bot(f"add {link} {petname}")
    assert answer.startswith(f"Added {petname} as {m.contact_jid}")
    await alice.wait(lambda: alice.client_roster[m.contact_jid]["name"] == petname, 10,
                     "the roster push for the added contact")
    assert (petname, "accepted", m.contact_jid) in network.a.contact_list("Alice")

    nonsense = await alice.bot("add not-an-address")
    assert nonsense.startswith("Sorry: ")


async def test_messages_go_in_a_session_and_a_new_session_is_told_to_the_contact(
        alice: Client, bob: Client, network: Network) -> None:
    a, b = network.account("Alice"), network.account("Bob")
    text = f"in a session {token()}"
    alice.chat(b.contact_jid, text)
    await bob.wait_body(a.contact_jid, text, 30)
    reply = f"and back {token()}"
    bob.chat(a.contact_jid, reply)
    await alice.wait_body(b.contact_jid, reply, 30)
    about = await alice.bot(f"contact {b.address[:16]}")
    assert "End-to-end session (post-quantum, forward secret) since" in about, about

    started = await alice.bot(f"newsession {b.address[:16]}")
    assert started.startswith("A new session with "), started

    def told() -> str | None:
        return next((t for t in bob.bodies(BOT) if "started a new end-to-end session" in t),
                    None)

    notice = await bob.wait(told, 60, "the bot telling Bob of Alice's new session")
    assert a.contact_jid in notice
    after = f"in the new session {token()}"
    alice.chat(b.contact_jid, after)
    await bob.wait_body(a.contact_jid, after, 30)
    assert "Last: " in await bob.bot(f"contact {a.address[:16]}")
    assert (await alice.bot("newsession nobody-by-that-name")).startswith("Sorry: no contact")
    assert bob.errors() == [] and alice.errors() == []


# --- errors a person meets ----------------------------------------------------------------


async def test_too_large_message_comes_back_as_an_error(alice: Client, network: Network) -> None:
    b = network.account("Bob")
    text = "x" * (MAX_PAYLOAD + 1000)
    ident = alice.chat(b.contact_jid, text)

    def bounced() -> slixmpp.Message | None:
        return next((m for m in alice.errors() if m["id"] == ident), None)

    error = await alice.wait(bounced, 20, "the error for the oversize message")
    assert error["from"].bare == b.contact_jid
    assert error["error"]["type"] == "modify"
    assert error["error"]["condition"] == "not-acceptable"
    assert "bytes" in error["error"]["text"] and "at most" in error["error"]["text"]


async def test_message_to_a_malformed_address_comes_back_as_an_error(
        alice: Client, network: Network) -> None:
    wrong = f"{network.account('Bob').address[:-1]}@{CONTACTS}"  # one character lost
    ident = alice.chat(wrong, "are you there?")

    def bounced() -> slixmpp.Message | None:
        return next((m for m in alice.errors() if m["id"] == ident), None)

    error = await alice.wait(bounced, 20, "the error for the malformed address")
    assert error["error"]["condition"] == "jid-malformed"
    assert "56" in error["error"]["text"] or "address" in error["error"]["text"]
    assert BOT not in str(error["from"])
