"""End to end across a restart: daemon B stopped with SIGTERM and started again.

Each test has its own pair of real daemons (copies of the session's template data
dirs: Alice on A; Bob and Carol on B, Alice and Bob contacts). Carol's client on B
is the watcher: the bot's ``status`` through it shows B's node while Bob is away.

What happens, as the user guide states it (``--storage``): with the default RAM
store, B keeps nothing but its key file and config, so after a restart its node is
empty and it catches up from A by anti-entropy (a reconcile at once on reconnecting):
what Alice sent while B was down reaches Bob. A still stores what B showed before,
and offers it again; the key file remembers what was shown, so it is not shown
twice. With ``--storage sqlite`` on both, B keeps its envelopes too.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import slixmpp

from bridge.core.seenset import ENTRY
from bridge.store.keystore import SEEN_FILENAME, SEEN_PLAIN
from tests.integration.e2e_support import (
    BOT,
    MUC_NS,
    ROOM,
    Client,
    Daemon,
    has_delay,
    pair_from_template,
    start_pair,
)

pytestmark = pytest.mark.slow
_unique = itertools.count(1)


@dataclass
class Pair:
    a: Daemon
    b: Daemon
    storage: str

    def jid(self, nick: str) -> str:
        """The JID the other daemon's users see for ``nick``."""
        return {**self.a.accounts, **self.b.accounts}[nick].contact_jid

    def client(self, nick: str, resource: str = "e2e") -> Client:
        daemon = self.a if nick in self.a.accounts else self.b
        return Client(daemon.accounts[nick], daemon, resource)


def _pair(tmp_path_factory: pytest.TempPathFactory, storage: str) -> Iterator[Pair]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp(f"restart-{storage}"))
    try:
        start_pair(a, b, "--storage", storage)
        yield Pair(a, b, storage)
    finally:
        b.stop()
        a.stop()


@pytest.fixture
def memory_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from _pair(tmp_path_factory, "memory")


@pytest.fixture
def sqlite_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from _pair(tmp_path_factory, "sqlite")


@pytest.fixture
async def alice_on_memory(memory_pair: Pair) -> AsyncIterator[Client]:
    async for client in _alice(memory_pair):
        yield client


@pytest.fixture
async def alice_on_sqlite(sqlite_pair: Pair) -> AsyncIterator[Client]:
    async for client in _alice(sqlite_pair):
        yield client


async def _alice(pair: Pair) -> AsyncIterator[Client]:
    client = await pair.client("Alice").login()
    try:
        await client.wait(client.peers, 20, "A linked to B")
        yield client
    finally:
        await client.close()


async def _stop_b_while_alice_sends(pair: Pair, alice: Client, texts: list[str]) -> None:
    """SIGTERM to B, and Alice's messages sent while it shuts down and is down, one
    envelope each: each is sent once A's node holds the one before (A publishes each
    itself; messages written while one is being sealed would share an envelope)."""
    stopping = asyncio.create_task(asyncio.to_thread(pair.b.stop, signal.SIGTERM))
    for text in texts:
        stored = await alice.stored_envelopes()
        alice.chat(pair.jid("Bob"), text)
        await alice.wait(lambda n=stored: _at_least(alice, n + 1), 30,
                         "Alice's envelope stored on A")
    assert await stopping == 0, "B stops cleanly on SIGTERM"
    assert alice.errors() == [], "sending while the peer is down is not an error"


async def _at_least(client: Client, count: int) -> bool:
    return await client.stored_envelopes() >= count


async def _wait_for_all(bob: Client, alice_jid: str, run: str, count: int) -> list[str]:
    """Bob's messages of this run once ``count`` have come and a round trip followed."""
    await bob.wait(lambda: len([t for t in bob.bodies(alice_jid) if run in t]) >= count, 30,
                   f"{count} messages of this run at Bob")
    await bob.ping_server()
    return [t for t in bob.bodies(alice_jid) if run in t]


def _run() -> str:
    return f"{time.monotonic_ns():x}-{next(_unique)}"


async def test_ram_store_catches_up_from_the_peer_after_a_restart(
        memory_pair: Pair, alice_on_memory: Client) -> None:
    pair, alice, run = memory_pair, alice_on_memory, _run()
    a_jid = pair.jid("Alice")
    bob_jid = pair.jid("Bob")
    bob = await pair.client("Bob").login()
    alice.chat(bob_jid, f"before the restart {run}")
    await bob.wait_body(a_jid, f"before the restart {run}")
    await bob.close()

    down = [f"while B is down {run} #{n}" for n in range(3)]
    await _stop_b_while_alice_sends(pair, alice, down)

    pair.b.start("--peer", pair.a.p2p, "--storage", "memory")
    bob = await pair.client("Bob").login()
    try:
        await _wait_for_all(bob, a_jid, run, len(down))
        alice.chat(bob_jid, f"after the restart {run}")
        await bob.wait_body(a_jid, f"after the restart {run}")
        await bob.ping_server()
        # A's node offered the first message again; B's key file remembers it was
        # shown, so it does not come twice, and the rest came in Alice's order.
        assert [t for t in bob.bodies(a_jid) if run in t] == [*down, f"after the restart {run}"]
        assert bob.errors() == []
    finally:
        await bob.close()


async def test_sqlite_store_delivers_everything_once_after_a_restart(
        sqlite_pair: Pair, alice_on_sqlite: Client) -> None:
    pair, alice, run = sqlite_pair, alice_on_sqlite, _run()
    a_jid, bob_jid = pair.jid("Alice"), pair.jid("Bob")
    bob = await pair.client("Bob").login()
    alice.chat(bob_jid, f"before the restart {run}")
    await bob.wait_body(a_jid, f"before the restart {run}")
    await bob.close()

    down = [f"while B is down {run} #{n}" for n in range(3)]
    await _stop_b_while_alice_sends(pair, alice, down)
    pair.b.start("--peer", pair.a.p2p, "--storage", "sqlite")
    bob = await pair.client("Bob").login()
    try:
        await _wait_for_all(bob, a_jid, run, len(down))
        alice.chat(bob_jid, f"after the restart {run}")
        await bob.wait_body(a_jid, f"after the restart {run}")
        await bob.ping_server()
        # B remembers what it showed: the first message does not come again.
        assert [t for t in bob.bodies(a_jid) if run in t] == [*down, f"after the restart {run}"]
        assert bob.errors() == []
    finally:
        await bob.close()


async def test_sqlite_store_keeps_what_waits_for_an_offline_client_across_a_restart(
        sqlite_pair: Pair, alice_on_sqlite: Client) -> None:
    pair, alice, run = sqlite_pair, alice_on_sqlite, _run()
    a_jid, bob_jid = pair.jid("Alice"), pair.jid("Bob")
    carol = await pair.client("Carol").login()
    away = [f"while Bob is away {run} #{n}" for n in range(2)]
    for text in away:  # one envelope each (see _stop_b_while_alice_sends)
        stored = await carol.stored_envelopes()
        alice.chat(bob_jid, text)
        await carol.wait(lambda n=stored: _at_least(carol, n + 1), 30,
                         "Alice's envelope on B while Bob is away")
    await carol.close()
    assert pair.b.stop() == 0
    pair.b.start("--peer", pair.a.p2p, "--storage", "sqlite")

    bob = await pair.client("Bob").login()
    try:
        alice.chat(bob_jid, f"after the restart {run}")
        await bob.wait_body(a_jid, f"after the restart {run}")
        await bob.ping_server()
        got = [m for m in bob.from_(a_jid) if run in str(m["body"])]
        assert [str(m["body"]) for m in got] == [*away, f"after the restart {run}"]
        assert all(has_delay(m) for m in got[:-1])
    finally:
        await bob.close()


PRIVATE = "{jabber:iq:private}"
BOOKMARKS = "{storage:bookmarks}"


async def _bookmarks(client: Client) -> list[tuple[str, str, str]]:
    """(room JID, autojoin, nick) of the XEP-0048 bookmarks in private storage."""
    iq = client.make_iq_get()
    ET.SubElement(ET.SubElement(iq.xml, PRIVATE + "query"), BOOKMARKS + "storage")
    reply = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    return [(c.get("jid", ""), c.get("autojoin", ""), c.findtext(BOOKMARKS + "nick") or "")
            for c in reply.xml.iter(BOOKMARKS + "conference")]


async def _join(client: Client, nick: str) -> None:
    presence = client.make_presence(pto=slixmpp.JID(f"{ROOM}/{nick}"))
    presence.xml.append(ET.Element(f"{{{MUC_NS}}}x"))
    presence.send()
    await client.wait(lambda: any(p["from"] == f"{ROOM}/{nick}"
                                  and 110 in p["muc"]["status_codes"]
                                  for p in client.presences), 10, f"in {ROOM} as {nick}")


async def test_a_client_finds_its_room_again_after_a_restart(
        memory_pair: Pair, alice_on_memory: Client) -> None:
    """Regression: bookmarks (XEP-0049 private storage) lived in RAM, so after a daemon
    restart Gajim found none and did not rejoin the public room."""
    pair, alice, run = memory_pair, alice_on_memory, _run()
    bob = await pair.client("Bob").login()
    # what Gajim does when one joins a room and keeps it: a bookmark with autojoin
    bookmark = ET.Element(BOOKMARKS + "storage")
    room = ET.SubElement(bookmark, BOOKMARKS + "conference",
                         {"jid": ROOM, "autojoin": "true", "name": "Public room"})
    ET.SubElement(room, BOOKMARKS + "nick").text = "bob"
    iq = bob.make_iq_set()
    ET.SubElement(iq.xml, PRIVATE + "query").append(bookmark)
    await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    await _join(bob, "bob")
    await bob.close()

    assert pair.b.stop() == 0
    pair.b.start("--peer", pair.a.p2p, "--storage", "memory")
    bob = await pair.client("Bob").login()
    try:
        # what a client does at login: fetch its bookmarks and join the autojoin rooms
        marks = await _bookmarks(bob)
        assert marks == [(ROOM, "true", "bob")]
        for jid, autojoin, nick in marks:
            if autojoin == "true" and jid == ROOM:
                await _join(bob, nick)
        await alice.wait(alice.peers, 30, "A linked to B again")
        await _join(alice, "alice")
        text = f"room after the restart {run}"
        alice.make_message(mto=slixmpp.JID(ROOM), mbody=text, mtype="groupchat").send()
        await bob.wait(lambda: any(m["type"] == "groupchat" and m["body"] == text
                                   for m in bob.messages), 30, "the room message at Bob")
    finally:
        await bob.close()


def _shown_recorded(daemon: Daemon) -> int:
    """How many shown envelopes and records the daemon's seen file records (no
    passphrase: stored plain)."""
    path = daemon.data_dir / SEEN_FILENAME
    if not path.exists():
        return 0
    raw = path.read_bytes()
    assert raw.startswith(SEEN_PLAIN)
    seen = raw[len(SEEN_PLAIN):]
    return (len(seen) - 1) // ENTRY.size if seen else 0


async def test_after_a_kill_9_a_peer_replaying_everything_shows_nothing_twice(
        memory_pair: Pair, alice_on_memory: Client) -> None:
    """The receiver's daemon dies by SIGKILL mid-conversation; its peer still holds
    and offers again every envelope (as any relay may, until they expire). Chat and
    room messages shown before the kill are not shown again; those sent while it was
    down are shown once each, in order."""
    pair, alice, run = memory_pair, alice_on_memory, _run()
    a_jid, bob_jid = pair.jid("Alice"), pair.jid("Bob")
    before = _shown_recorded(pair.b)
    bob = await pair.client("Bob").login()
    await _join(alice, "alice")
    await _join(bob, "bob")
    shown = [f"before the kill {run} #{n}" for n in range(3)]
    for text in shown:
        alice.chat(bob_jid, text)
    alice.make_message(mto=slixmpp.JID(ROOM), mbody=f"room {run}", mtype="groupchat").send()
    await _wait_for_all(bob, a_jid, run, len(shown))
    await bob.wait(lambda: [m for m in bob.messages if m["type"] == "groupchat"
                            and m["body"] == f"room {run}"], 30, "the room message at Bob")
    # What reached the client is on disk before the kill: wait for the key file to say so.
    await bob.wait(lambda: _shown_recorded(pair.b) >= before + len(shown) + 1, 20,
                   "B's key file records what Bob was shown")
    held_by_a = await alice.stored_envelopes()  # the shown ones among them
    assert pair.b.stop(signal.SIGKILL) == -signal.SIGKILL
    await bob.close()

    down = [f"while B is dead {run} #{n}" for n in range(2)]
    for text in down:  # one envelope each (see _stop_b_while_alice_sends)
        stored = await alice.stored_envelopes()
        alice.chat(bob_jid, text)
        await alice.wait(lambda n=stored: _at_least(alice, n + 1), 30, "stored on A")
    pair.b.start("--peer", pair.a.p2p, "--storage", "memory")
    bob = await pair.client("Bob").login()
    try:
        await _join(bob, "bob")
        await _wait_for_all(bob, a_jid, run, len(down))
        # B's empty RAM store took in everything A held: the envelopes shown before the
        # kill were offered to B again (the replay this test is about).
        await bob.wait(lambda: _at_least(bob, held_by_a + len(down)), 30,
                       "B holds again what A held")
        alice.make_message(mto=slixmpp.JID(ROOM), mbody=f"room again {run}",
                           mtype="groupchat").send()
        alice.chat(bob_jid, f"after the restart {run}")
        await bob.wait_body(a_jid, f"after the restart {run}")
        await bob.wait(lambda: [m for m in bob.messages if m["type"] == "groupchat"
                                and m["body"] == f"room again {run}"], 30, "the new room message")
        await bob.ping_server()
        assert [t for t in bob.bodies(a_jid) if run in t] == [*down, f"after the restart {run}"]
        room = [str(m["body"]) for m in bob.messages
                if m["type"] == "groupchat" and run in str(m["body"])]
        assert room == [f"room again {run}"], "the room message shown before is not repeated"
        assert bob.errors() == []
    finally:
        await bob.close()


async def test_a_kill_9_of_the_sender_mid_stream_reuses_no_key_and_shows_nothing_twice(
        memory_pair: Pair) -> None:
    """Alice's daemon dies by SIGKILL while her messages stream out, in their session
    with Bob. After its restart, from what its key file holds, her next messages
    still open at Bob (a reused message number would be refused there as a
    duplicate), and Bob is shown every message that left A once, in order."""
    pair, run = memory_pair, _run()
    a_jid, bob_jid = pair.jid("Alice"), pair.jid("Bob")
    alice = await pair.client("Alice").login()
    bob = await pair.client("Bob").login()
    await alice.wait(alice.peers, 20, "A linked to B")
    hello = f"start {run}"
    alice.chat(bob_jid, hello)
    await bob.wait_body(a_jid, hello, 30)
    stream = [f"stream {run} #{n:02d}" for n in range(20)]
    for text in stream:
        alice.chat(bob_jid, text)
    await bob.wait(lambda: len([t for t in bob.bodies(a_jid) if "stream" in t and run in t])
                   >= 3, 30, "the stream under way at Bob")
    assert pair.a.stop(signal.SIGKILL) == -signal.SIGKILL
    await alice.close()

    pair.a.start("--storage", "memory")
    alice = await pair.client("Alice").login()
    try:
        await alice.wait(alice.peers, 30, "A linked to B again")
        after = [f"after the kill {run} #{n}" for n in range(5)]
        for text in after:
            alice.chat(bob_jid, text)
        await bob.wait(lambda: all(t in bob.bodies(a_jid) for t in after), 60,
                       "Alice's messages after the restart at Bob")
        await bob.ping_server()
        got = [t for t in bob.bodies(a_jid) if run in t]
        assert len(got) == len(set(got)), f"shown twice: {got}"
        left = [t for t in got if t.startswith("stream")]
        print(f"{len(left)} of {len(stream)} streamed messages left A before the kill")
        assert left == sorted(left) and set(left) <= set(stream)
        assert got == [hello, *left, *after]
        assert alice.errors() == [] and bob.errors() == []
        about = await bob.bot(f"contact {pair.a.accounts['Alice'].address[:16]}")
        assert "End-to-end session (post-quantum" in about, about
    finally:
        await alice.close()
        await bob.close()


async def test_a_daemon_put_back_to_an_older_key_file_starts_a_new_session(
        memory_pair: Pair) -> None:
    """B's key file (and its record of what was shown) is replaced by a copy taken
    before Bob and Alice talked: Alice's messages in their session no longer open
    there. B's daemon starts a new session on its own; the bots tell both people, and
    they talk on in one session. (B's copy also answers the old handshake it opens
    again, from a state Alice has moved past: she may find that unreadable and start
    over too; the restarts cross and settle.)"""
    pair, run = memory_pair, _run()
    a_jid, bob_jid = pair.jid("Alice"), pair.jid("Bob")
    alice_key, bob_key = (pair.a.accounts["Alice"].address[:16],
                          pair.b.accounts["Bob"].address[:16])
    alice = await pair.client("Alice").login()
    bob = await pair.client("Bob").login()
    await alice.wait(alice.peers, 20, "A linked to B")

    async def knows_alices_keys() -> bool:
        return "Their keys are known" in await bob.bot(f"contact {alice_key}")

    await bob.wait(knows_alices_keys, 30, "Alice's announcement at B")
    # the key file and the record of what was shown beside it (none yet, or a copy)
    older = pair.b.data_dir.parent / "keys-before-the-talk.pim"
    shutil.copy(pair.b.data_dir / "keys.pim", older)
    seen = pair.b.data_dir / SEEN_FILENAME
    older_seen = seen.read_bytes() if seen.exists() else None
    for text, sender, to, reader in ((f"first {run}", alice, bob_jid, bob),
                                     (f"reply {run}", bob, a_jid, alice),
                                     (f"second {run}", alice, bob_jid, bob)):
        sender.chat(to, text)
        await reader.wait_body(a_jid if reader is bob else bob_jid, text, 30)
    await bob.close()
    assert pair.b.stop() == 0
    # Sessions are dated in whole seconds and a new one takes over only if it is newer:
    # a key file is put back later than in the second the session was made
    talked = int(time.time())
    while int(time.time()) <= talked:
        await asyncio.sleep(0.05)
    shutil.copy(older, pair.b.data_dir / "keys.pim")
    if older_seen is None:
        seen.unlink(missing_ok=True)
    else:
        seen.write_bytes(older_seen)
    pair.b.start("--peer", pair.a.p2p, "--storage", "memory")
    bob = await pair.client("Bob").login()
    try:
        def told_alice() -> str | None:
            return next((t for t in alice.bodies(BOT) if "Bob" in t or bob_jid in t), None)

        notice = await alice.wait(told_alice, 60, "the bot telling Alice of Bob's new session")
        assert "started a new end-to-end session" in notice or "could not be opened" in notice

        async def noted_at_b() -> str:
            about = await bob.bot(f"contact {alice_key}")
            told = ("could not be opened", "started a new end-to-end session")
            return about if any(t in about for t in told) else ""

        # B found Alice's message unreadable and started over, or — when B's copy answered
        # the old handshake first and Alice started over — took her new session: either
        # way Bob is told, and they talk on in one session
        about = await bob.wait(noted_at_b, 30, "B's note of the new session")
        assert ("A new session was started" in about
                or "Alice started a new end-to-end session" in about), about
        after = f"after the new session {run}"
        alice.chat(bob_jid, after)
        await bob.wait_body(a_jid, after, 30)
        back = f"and back {run}"
        bob.chat(a_jid, back)
        await alice.wait_body(bob_jid, back, 30)

        async def settled() -> bool:  # crossed restarts settle on one session, confirmed
            return "End-to-end session" in await alice.bot(f"contact {bob_key}")

        await alice.wait(settled, 30, "Alice and Bob in one confirmed session")
    finally:
        await alice.close()
        await bob.close()
