"""The session book over real key files: a conversation in sessions, kept across
restarts, a stranger's session held in RAM, forward secrecy and break-in recovery
against a thief with a copy of the key file (bridge/sessionbook.py)."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.core.address import decode_address
from bridge.core.checks import check_envelope
from bridge.core.envelope import Envelope, Kind
from bridge.core.errors import RemoteProtocolError
from bridge.core.sessions import Outcome
from bridge.core.stamp import Stamp
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.sessionbook import SessionBook, WaitingForKeysError
from bridge.store.keystore import MAGIC_PLAIN, Keystore
from tests.nodes import SharedNode
from tests.stamp_support import mint_stamp

BITS = 2
PASSPHRASE = "correct horse battery staple"  # the thief knows it too
NOW = int(time.time())  # the nodes check envelopes by the real clock
async def _stamp(bucket: int) -> Stamp:
    return mint_stamp(bucket, now=NOW, bits=BITS)


@dataclass
class Side:
    service: Service
    book: SessionBook
    address: str

    async def send(self, to: str, text: str) -> Envelope:
        raw = await self.book.seal(self.address, to, Kind.DIRECT, text.encode(), _stamp)
        return check_envelope(raw, now=NOW, base_bits=BITS)

    async def read(self, env: Envelope, contact: str | None = None) -> tuple[str, str, object]:
        got = self.book.open(self.address, env, contact)
        await self.book.durable()
        return got.sender, got.payload.decode(), got.outcome


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Path, WorkerPool, SharedNode]]:
    pool = WorkerPool(1)
    yield tmp_path, pool, SharedNode(BITS)
    pool.close()


async def _side(root: Path, pool: WorkerPool, node: SharedNode, name: str,
                nick: str | None = None, passphrase: str | None = None) -> Side:
    keystore = Keystore(root / name, passphrase, kdf_ops=1, kdf_mem=8192) if passphrase \
        else Keystore(root / name)
    s = Service(keystore, node, pool, base_bits=BITS, clock=lambda: NOW)
    await s.start()
    if nick is not None:
        await s.create_identity(nick)
    address = s.identities()[0].address
    return Side(s, SessionBook(s.ids, s.book, lambda: NOW), address)


def _introduce(a: Side, b: Side) -> None:
    """``a`` knows ``b`` as a contact and holds b's hybrid prekey (as from an announcement)."""
    a.service.add_contact(a.address, b.address, "them")
    c = a.service.book.need(a.address, b.address)
    rec = b.service.ids.rec(b.address)
    assert a.book.learn_hybrid_prekey(c, decode_address(b.address),
                                      b.service.ids.live_hybrid_prekeys(rec))


async def test_a_conversation_in_sessions_survives_restarts(world) -> None:  # type: ignore[no-untyped-def]
    root, pool, node = world
    alice = await _side(root, pool, node, "a", "Alice")
    bob = await _side(root, pool, node, "b", "Bob")
    _introduce(alice, bob)
    bob.service.add_contact(bob.address, alice.address, "alice")
    first = await alice.send(bob.address, "hello Bob")
    assert await bob.read(first) == (alice.address, "hello Bob", Outcome.NEW)
    reply = await bob.send(alice.address, "hello Alice")
    assert (await alice.read(reply, bob.address))[1] == "hello Alice"
    await alice.service.stop()
    await bob.service.stop()

    alice = await _side(root, pool, node, "a")  # both restarted: the key files hold the sessions
    bob = await _side(root, pool, node, "b")
    later = await alice.send(bob.address, "still there?")
    assert later.size == 402, "no handshake block any more: a small envelope"
    assert (await bob.read(later, alice.address))[1] == "still there?"
    with pytest.raises(RemoteProtocolError):  # a relay's replay opens nothing
        bob.book.open(bob.address, later, alice.address)


async def test_no_session_without_their_keys_and_a_strangers_session_stays_in_ram(
        world) -> None:  # type: ignore[no-untyped-def]
    root, pool, node = world
    alice = await _side(root, pool, node, "a", "Alice")
    bob = await _side(root, pool, node, "b", "Bob")
    alice.service.add_contact(alice.address, bob.address, "bob")
    with pytest.raises(WaitingForKeysError, match="waiting for bob's keys"):
        await alice.send(bob.address, "too early")
    _introduce(alice, bob)
    first = await alice.send(bob.address, "hi, we have not met")
    got = bob.book.open(bob.address, first, None)
    assert (got.sender, got.contact) == (alice.address, False)
    await bob.service.ids.flush()
    assert b"sessions" not in (root / "b" / "keys.pim").read_bytes().split(b'"contacts"')[0]
    assert all(not c.sessions for c in bob.service.ids.rec(bob.address).contacts)
    bob.service.add_contact(bob.address, alice.address, "alice")  # accepted
    bob.book.promote(bob.address, alice.address)
    assert bob.service.book.need(bob.address, alice.address).sessions
    reply = await bob.send(alice.address, "nice to meet you")
    assert (await alice.read(reply, bob.address))[1] == "nice to meet you"


async def test_a_thief_with_the_key_file_reads_neither_the_past_nor_after_healing(
        world) -> None:  # type: ignore[no-untyped-def]
    root, pool, node = world
    alice = await _side(root, pool, node, "a", "Alice")
    bob = await _side(root, pool, node, "b", "Bob", passphrase=PASSPHRASE)
    _introduce(alice, bob)
    bob.service.add_contact(bob.address, alice.address, "alice")
    past = [await alice.send(bob.address, f"past {n}") for n in range(3)]
    for env in past:
        await bob.read(env, alice.address)
    await bob.service.ids.flush()
    assert not (root / "b" / "keys.pim").read_bytes().startswith(MAGIC_PLAIN)
    shutil.copytree(root / "b", root / "thief")  # the key file is stolen, and its passphrase
    thief = await _side(root, pool, node, "thief", passphrase=PASSPHRASE)

    for env in past:  # forward secrecy: what Bob opened cannot be opened again
        with pytest.raises(RemoteProtocolError):
            thief.book.open(thief.address, env, alice.address)
    # What Alice sends before Bob's next reply is in the chain the thief holds: it
    # reads it (the window break-in recovery closes), which shows the copy works.
    window = await alice.send(bob.address, "in the window")
    assert thief.book.open(thief.address, window, alice.address).payload == b"in the window"
    await bob.read(window, alice.address)
    # Bob and Alice talk on: a reply each way takes a DH step on both sides
    await alice.read(await bob.send(alice.address, "I am here"), bob.address)
    await bob.read(await alice.send(bob.address, "good"), alice.address)
    await alice.read(await bob.send(alice.address, "still here"), bob.address)
    healed = await alice.send(bob.address, "after healing")
    assert (await bob.read(healed, alice.address))[1] == "after healing"
    with pytest.raises(RemoteProtocolError):  # break-in recovery: the copy is behind
        thief.book.open(thief.address, healed, alice.address)


async def test_a_crash_after_any_send_never_reuses_a_message_key(world) -> None:  # type: ignore[no-untyped-def]
    """Alice's daemon is killed again and again, each time just after a send; each
    time it restarts from what its key file holds. Every message still opens at Bob,
    once: no number, and so no message key, is used twice."""
    root, pool, node = world
    alice = await _side(root, pool, node, "a", "Alice")
    bob = await _side(root, pool, node, "b", "Bob")
    _introduce(alice, bob)
    bob.service.add_contact(bob.address, alice.address, "alice")
    await bob.read(await alice.send(bob.address, "start"), alice.address)
    await alice.read(await bob.send(alice.address, "ok"), bob.address)
    home, sent = "a", []
    for n in range(40):
        sent.append(await alice.send(bob.address, f"m{n}"))
        if n in (0, 5, 30, 31, 32, 39):  # kill -9 now: only the key file remains
            shutil.copytree(root / home, root / f"crash{n}")
            home = f"crash{n}"
            alice = await _side(root, pool, node, home)
    opened = [(await bob.read(env, alice.address))[1] for env in sent]
    assert opened == [f"m{n}" for n in range(40)]


async def test_a_stream_of_messages_uses_every_number_in_turn(world) -> None:  # type: ignore[no-untyped-def]
    """The key file's form of a session resumes at the end of its reserved block; the
    book keeps the live state, so a stream of messages uses numbers 0, 1, 2, ... and
    the recipient skips (and stores) no key."""
    root, pool, node = world
    alice = await _side(root, pool, node, "a", "Alice")
    bob = await _side(root, pool, node, "b", "Bob")
    _introduce(alice, bob)
    bob.service.add_contact(bob.address, alice.address, "alice")
    for n in range(70):
        await bob.read(await alice.send(bob.address, f"m{n}"), alice.address)
    mine = alice.book.peer(alice.address, bob.address).active
    theirs = bob.book.peer(bob.address, alice.address).active
    assert mine is not None and theirs is not None
    assert (mine.ns, theirs.nr, theirs.stored_keys) == (70, 70, 0)



async def test_a_daemon_that_lost_its_session_starts_over_as_a_restart(world) -> None:  # type: ignore[no-untyped-def]
    """Bob's daemon is put back to a key file from before the talk: it holds no session
    with Alice, who holds a confirmed one. Bob's new session carries the restart flag
    even though Bob has none, so Alice takes it as a reset. Unflagged, Alice took it for
    the other half of a simultaneous start and kept her own session, which Bob can no
    longer read."""
    root, pool, node = world
    alice = await _side(root, pool, node, "a", "Alice")
    bob = await _side(root, pool, node, "b", "Bob")
    _introduce(alice, bob)
    _introduce(bob, alice)
    await bob.book.durable()
    shutil.copytree(root / "b", root / "b-old")
    first = await alice.send(bob.address, "hello")
    assert await bob.read(first) == (alice.address, "hello", Outcome.NEW)
    assert (await alice.read(await bob.send(alice.address, "hi"), bob.address))[2] is None
    old = await _side(root, pool, node, "b-old")
    assert old.address == bob.address
    later = SessionBook(old.service.ids, old.service.book, lambda: NOW + 5)
    raw = await later.seal(old.address, alice.address, Kind.DIRECT, b"", _stamp, restart=True)
    again = check_envelope(raw, now=NOW, base_bits=BITS)
    assert (await alice.read(again))[2] is Outcome.RESET
