"""XEP-0198 stream management on the embedded listener, over real sockets.

A message counts as shown (``service.delivered``) only once a client with stream
management acknowledged it. The connection is cut between the listener's write and
the client's acknowledgement two ways: a raw client that reads the message and never
acknowledges it, and slixmpp (with its XEP-0198 plugin) behind a TCP relay that holds
what the listener writes and then drops both sides. Then: resumed, the message comes
again, once; not resumed, the identity's next session gets it.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.events import IdentityInfo, MessageArrived
from bridge.xmpp import C2SServer
from bridge.xmpp.stream import C2SConnection
from tests.fakes import STREAM_HEADER, FakeService, RawClient, SlixClient
from tests.integration.c2s_support import CAROL, listening, with_alice
from tests.util import wait_until

SM = "urn:xmpp:sm:3"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    async with listening(with_alice(FakeService()), tmp_path, resume_timeout=120) as srv:
        yield srv


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


def arrival(alice: IdentityInfo, text: str) -> MessageArrived:
    return MessageArrived(to=alice.address, sender=CAROL, text=text,
                          sent_at_ms=1_700_000_000_000, envelope_id=os.urandom(32),
                          receipt_wanted=False)


async def until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    await wait_until(predicate, timeout, interval=0.01, message=what)


async def raw_session(server: C2SServer, resume: bool = True) -> tuple[RawClient, str]:
    """A raw client logged in, bound, stream management on, available; its SM id."""
    raw = await RawClient.open(server.port)
    await raw.login(server.cert_path, "alice", "alice-pw")
    raw.send(f"<enable xmlns='{SM}' resume='{str(resume).lower()}'/>".encode())
    enabled = await raw.expect(b"<enabled")
    await raw.expect(b"/>")
    found = re.search(rb'<enabled[^>]*id="([^"]+)"', raw.buffer)
    assert (found is not None) == resume, enabled
    raw.send(b"<presence/><iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
    await raw.expect(b'id="sync"')  # everything the presence brought came before
    assert f"<r xmlns='{SM}'/>".encode() in raw.buffer, "the listener asks for acks"
    raw.buffer = b""
    return raw, found[1].decode() if found else ""


async def authed(server: C2SServer) -> RawClient:
    """A raw client after SASL, before binding; the features are in its buffer."""
    raw = await RawClient.open(server.port)
    await raw.starttls(server.cert_path)
    assert await raw.plain_auth("alice", "alice-pw") == b"success"
    raw.send(STREAM_HEADER)
    await raw.expect(b"</stream:features>")
    return raw


def unacked(server: C2SServer, alice: IdentityInfo) -> int:
    return sum(len(s.sm.queue) for s in server.sessions.of(alice.address)
               if getattr(s, "sm", None) is not None)


def waiting_ids(server: C2SServer) -> list[str]:
    return [c.sm.id for c in server.resumable.waiting() if c.sm is not None]


def sent_count(server: C2SServer, alice: IdentityInfo) -> int:
    """What a client that read everything reports as ``h``: every stanza sent to it."""
    (session,) = server.sessions.of(alice.address)
    assert isinstance(session, C2SConnection) and session.sm is not None
    return session.sm.acked + len(session.sm.queue)


async def test_a_message_is_shown_for_good_only_when_acknowledged_and_resent_on_resume(
        server: C2SServer, service: FakeService) -> None:
    alice = service.identities_by_name["alice"]
    raw, sm_id = await raw_session(server)
    event = arrival(alice, "keep me until acked")
    service.emit(event)
    await raw.expect(b"keep me until acked")
    assert event.envelope_id not in service.delivered_ids, "written is not shown"

    raw.writer.transport.abort()  # the connection dies before the client acknowledged
    await until(lambda: len(server.resumable) == 1, "the session waiting to be resumed")
    assert event.envelope_id not in service.delivered_ids
    assert [s.available for s in server.sessions.of(alice.address)] == [True]

    again = await authed(server)
    assert f"<sm xmlns=\"{SM}\"".encode() in again.buffer
    again.buffer = b""
    again.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>".encode())
    await again.expect(b"keep me until acked")
    resumed = re.search(rb'<resumed[^>]*h="(\d+)"', again.buffer)
    assert resumed is not None and resumed[1] == b"2", "it sent <presence/> and a ping"
    assert len(server.resumable) == 0
    queued = unacked(server, alice)
    assert queued >= 1
    again.send(f"<a xmlns='{SM}' h='{queued}'/>".encode())
    await until(lambda: event.envelope_id in service.delivered_ids, "delivered on the ack")
    assert service.delivered_ids.count(event.envelope_id) == 1
    assert unacked(server, alice) == 0

    # the resumed session is the same session: a new message reaches it, counted on
    again.send(b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    await again.expect(b"p1")
    again.send(f"<r xmlns='{SM}'/>".encode())
    await again.expect(b'h="3"')  # <presence/> and a ping before, a ping after
    again.close()


async def test_a_session_not_resumed_gives_its_unacknowledged_messages_to_the_next(
        server: C2SServer, service: FakeService) -> None:
    alice = service.identities_by_name["alice"]
    raw, _ = await raw_session(server, resume=False)
    event = arrival(alice, "for whoever comes next")
    service.emit(event)
    await raw.expect(b"for whoever comes next")
    raw.writer.transport.abort()
    await until(lambda: not server.sessions.of(alice.address), "the session ended")
    assert len(server.gateway.delivery.offline) == 1, "held for the next client"
    assert event.envelope_id not in service.delivered_ids

    client = await SlixClient("alice@localhost/next", "alice-pw", server.cert_path
                              ).connect(server.port)
    try:
        msg: Any = await client.next_message(lambda m: m["body"] == event.text)
        assert msg.xml.find("{urn:xmpp:delay}delay") is not None
        await until(lambda: event.envelope_id in service.delivered_ids, "delivered")
    finally:
        await client.close()


async def test_a_waiting_session_that_times_out_ends_and_its_messages_go_on(
        tmp_path: Path) -> None:
    service = FakeService()
    alice = service.add_user("alice", "alice-pw")
    service.put_contact(alice.address, CAROL, "Carol")
    server = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls", resume_timeout=0.2)
    await server.start()
    try:
        watcher = await SlixClient("alice@localhost/watcher", "alice-pw", server.cert_path
                                   ).connect(server.port)
        raw, _ = await raw_session(server)
        event = arrival(alice, "to both")
        service.emit(event)
        await raw.expect(b"to both")
        await watcher.next_message(lambda m: m["body"] == "to both")
        # the watcher has no stream management: it had it at the write
        assert service.delivered_ids == [event.envelope_id]
        late = arrival(alice, "only the raw one misses this")
        raw.writer.transport.abort()
        await until(lambda: len(server.resumable) == 1, "waiting to be resumed")
        service.emit(late)  # queued for the waiting session, and written to the watcher
        await watcher.next_message(lambda m: m["body"] == late.text)
        await until(lambda: len(server.resumable) == 0, "the wait over")
        presence: Any = await watcher.next_presence(lambda p: p["type"] == "unavailable")
        assert presence["from"].resource != "watcher"
        assert service.delivered_ids.count(late.envelope_id) == 1
        await watcher.close()
    finally:
        await server.close()


@pytest.mark.parametrize(("ack", "condition", "text"), [
    ("5", "undefined-condition", "handled-count-too-high"),
    ("4294967296", "bad-format", "h must be a count"),
    ("-1", "bad-format", "h must be a count"),
    ("", "bad-format", "h must be a count"),
])
async def test_a_bad_acknowledgement_is_a_stream_error(server: C2SServer, service: FakeService,
                                                      ack: str, condition: str,
                                                      text: str) -> None:
    raw, _ = await raw_session(server)
    raw.send(f"<a xmlns='{SM}' h='{ack}'/>".encode())
    closed = await raw.read_to_eof()
    assert f"<{condition} ".encode() in closed and text.encode() in closed
    # the listener goes on
    other, _ = await raw_session(server)
    other.close()


async def test_stream_management_asked_out_of_turn_fails_politely(server: C2SServer) -> None:
    raw = await authed(server)
    raw.buffer = b""
    raw.send(f"<resume xmlns='{SM}' previd='no-such-session' h='0'/>".encode())
    failed = await raw.expect(b"</failed>")
    assert b"item-not-found" in failed
    raw.buffer = b""
    raw.send(f"<enable xmlns='{SM}'/>".encode())  # before binding
    assert b"unexpected-request" in await raw.expect(b"</failed>")
    raw.buffer = b""
    raw.send(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await raw.expect(b"</iq>")
    raw.buffer = b""
    raw.send(f"<r xmlns='{SM}'/>".encode())  # not enabled yet
    assert b"unexpected-request" in await raw.expect(b"</failed>")
    raw.buffer = b""
    raw.send(f"<enable xmlns='{SM}'/>".encode())
    await raw.expect(b"<enabled")
    raw.buffer = b""
    raw.send(f"<enable xmlns='{SM}'/>".encode())  # twice
    assert b"unexpected-request" in await raw.expect(b"</failed>")
    raw.close()


async def test_another_identity_cannot_resume_a_session(server: C2SServer,
                                                        service: FakeService) -> None:
    service.add_user("mallory", "mallory-pw")
    raw, sm_id = await raw_session(server)
    raw.writer.transport.abort()
    await until(lambda: len(server.resumable) == 1, "waiting to be resumed")
    thief = await RawClient.open(server.port)
    await thief.starttls(server.cert_path)
    assert await thief.plain_auth("mallory", "mallory-pw") == b"success"
    thief.send(STREAM_HEADER)
    await thief.expect(b"</stream:features>")
    thief.buffer = b""
    thief.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>".encode())
    assert b"item-not-found" in await thief.expect(b"</failed>")
    assert len(server.resumable) == 1, "still Alice's to resume"
    thief.close()


async def test_resuming_while_the_old_connection_still_looks_open(server: C2SServer,
                                                                   service: FakeService) -> None:
    """The listener has not yet seen the old connection die (no FIN, as on a lost
    Wi-Fi link): the resume takes the session, the old connection gets conflict."""
    alice = service.identities_by_name["alice"]
    old, sm_id = await raw_session(server)
    event = arrival(alice, "still in the old socket")
    service.emit(event)
    await old.expect(b"still in the old socket")
    new = await authed(server)
    new.buffer = b""
    new.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>".encode())
    await new.expect(b"still in the old socket")
    assert b"<conflict " in await old.read_to_eof()
    await until(lambda: len(server._connections) == 1, "only the new connection counted")
    assert [s.jid.resource for s in server.sessions.of(alice.address)] == [
        s.jid.resource for s in server.sessions.of(alice.address) if s.available]
    new.send(f"<a xmlns='{SM}' h='{sent_count(server, alice)}'/>".encode())
    await until(lambda: event.envelope_id in service.delivered_ids, "delivered on the ack")
    # a resumed session can be resumed again
    new.writer.transport.abort()
    await until(lambda: len(server.resumable) == 1, "waiting to be resumed again")
    third = await authed(server)
    third.buffer = b""
    third.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='{sent_count(server, alice)}'/>"
               .encode())
    assert b"<resumed " in await third.expect(b"<resumed")
    assert len(server.resumable) == 0 and len(server.sessions.of(alice.address)) == 1
    third.send(b"</stream:stream>")  # a clean close ends the session for good
    await until(lambda: not server.sessions.of(alice.address), "the session over")
    assert len(server.resumable) == 0


@pytest.mark.parametrize("waiting", [False, True])
async def test_past_the_unacknowledged_bound_the_session_ends_and_nothing_is_lost(
        server: C2SServer, service: FakeService, monkeypatch: pytest.MonkeyPatch,
        waiting: bool) -> None:
    """A client that never acknowledges (or a dropped one that never comes back) cannot
    make the listener keep stanzas for ever: past the bound its session ends, and the
    messages it did not acknowledge wait for the identity's next client."""
    monkeypatch.setattr("bridge.xmpp.sm.MAX_UNACKED", 5)
    alice = service.identities_by_name["alice"]
    raw, _ = await raw_session(server)
    assert sent_count(server, alice) < 5, "the login's own stanzas are within the bound"
    if waiting:
        raw.writer.transport.abort()
        await until(lambda: len(server.resumable) == 1, "waiting to be resumed")
    events = [arrival(alice, f"unacked #{n}") for n in range(6)]
    for event in events:
        service.emit(event)
    if not waiting:
        closed = await raw.read_to_eof()
        assert b"<resource-constraint " in closed and b"not acknowledged" in closed
    await until(lambda: not server.sessions.of(alice.address), "the session ended")
    assert len(server.resumable) == 0
    assert service.delivered_ids == []
    assert len(server.gateway.delivery.offline) == len(events), "all held for the next"


async def test_dropped_sessions_waiting_to_be_resumed_are_bounded_per_identity(
        server: C2SServer, service: FakeService) -> None:
    alice = service.identities_by_name["alice"]
    server.resumable.per_identity = 2
    ids = []
    for _ in range(3):
        raw, sm_id = await raw_session(server)
        ids.append(sm_id)
        raw.writer.transport.abort()
        await until(lambda: sm_id in waiting_ids(server), "waiting to be resumed")  # noqa: B023
    assert waiting_ids(server) == ids[1:]
    assert len(server.sessions.of(alice.address)) == 2, "the oldest waiting one ended"
    first = await authed(server)
    first.buffer = b""
    first.send(f"<resume xmlns='{SM}' previd='{ids[0]}' h='0'/>".encode())
    assert b"item-not-found" in await first.expect(b"</failed>")
    last = await authed(server)
    last.buffer = b""
    last.send(f"<resume xmlns='{SM}' previd='{ids[2]}' h='0'/>".encode())
    await last.expect(b"<resumed")
    first.close()
    last.close()
