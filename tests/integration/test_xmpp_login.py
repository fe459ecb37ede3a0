"""Logging in to the embedded listener with real slixmpp clients over loopback."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from bridge.xmpp import C2SServer, LoginThrottle, ThrottlePolicy
from bridge.xmpp.tls import fingerprint_of
from tests.fakes import FakeService, RawClient, SlixClient, make_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(tmp_path: Path, clock: Clock) -> AsyncIterator[C2SServer]:
    service = FakeService()
    alice = service.add_user("alice", "alice-secret-pw")
    service.add_user("bob", "bob-secret-pw")
    service.put_contact(alice.address, make_address(b"carol"), "Carol")
    # tiny delays so a thousand failures take seconds, a lockout to test, a clock to move
    throttle = LoginThrottle(
        ThrottlePolicy(base_delay=0.001, max_delay=0.005, lockout_after=500,
                       lockout_seconds=300), clock=clock)
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls", throttle=throttle)
    await srv.start()
    yield srv
    await srv.close()


def fake(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_login_bind_roster_with_each_mechanism(server: C2SServer, mech: str) -> None:
    client = await SlixClient("alice@localhost/laptop", "alice-secret-pw", server.cert_path,
                              sasl_mech=mech).connect(server.port)
    try:
        assert client.started.is_set()
        assert client.xmpp.boundjid.full == "alice@localhost/laptop"
        roster = client.xmpp.client_roster
        carol = f"{make_address(b'carol')}@p2p.localhost"
        assert roster[carol]["name"] == "Carol"
        assert roster[carol]["subscription"] == "both"
        assert roster["paranoim@localhost"]["subscription"] == "both"
        # server disco and ping answer (Gajim needs both)
        info = await client.xmpp.plugin["xep_0030"].get_info(jid="localhost")
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await client.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    finally:
        await client.close()


async def test_client_trying_direct_tls_first_still_gets_in(server: C2SServer) -> None:
    # slixmpp's default: direct TLS on the given port, then STARTTLS
    client = await SlixClient("bob@localhost/x", "bob-secret-pw", server.cert_path,
                              direct_tls=True).connect(server.port)
    try:
        assert client.started.is_set()
    finally:
        await client.close()


async def test_wrong_password_is_refused(server: C2SServer) -> None:
    client = await SlixClient("alice@localhost/x", "wrong", server.cert_path,
                              sasl_mech="PLAIN").connect(server.port)
    try:
        assert client.failed.is_set() and not client.started.is_set()
    finally:
        await client.close()


async def test_plaintext_auth_is_refused_before_starttls(server: C2SServer) -> None:
    raw = await RawClient.open(server.port)
    raw.send(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
    features = await raw.expect(b"</stream:features>")
    assert b"<required" in features and b"mechanism" not in features
    raw.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
             b"AGFsaWNlAGFsaWNlLXNlY3JldC1wdw==</auth>")
    reply = await raw.read_to_eof()
    assert b"<policy-violation" in reply and b"<success" not in reply


async def test_thousand_wrong_passwords_then_others_still_log_in(
    server: C2SServer, clock: Clock
) -> None:
    attempts = 0

    async def guesser(n: int) -> None:
        nonlocal attempts
        while attempts < 1000:
            raw = await RawClient.open(server.port)
            try:
                await raw.starttls(server.cert_path)
                tries = 0
                while tries < server.max_auth_failures and attempts < 1000:
                    attempts += 1
                    tries += 1
                    reply = await raw.plain_auth("alice", f"guess-{n}-{attempts}")
                    assert b"<not-authorized" in reply
                if tries == server.max_auth_failures:  # the last failure ends the stream
                    assert b"<policy-violation" in await raw.read_to_eof()
            finally:
                raw.close()

    await asyncio.gather(*(guesser(n) for n in range(8)))
    assert attempts >= 1000

    # another account logs in at once, from the same address
    bob = await SlixClient("bob@localhost/x", "bob-secret-pw", server.cert_path
                           ).connect(server.port)
    try:
        assert bob.started.is_set()
    finally:
        await bob.close()

    # the attacked account is locked for now, even with the right password ...
    raw = await RawClient.open(server.port)
    await raw.starttls(server.cert_path)
    reply = await raw.plain_auth("alice", "alice-secret-pw")
    assert b"<not-authorized" in reply and b"try again" in reply
    raw.close()

    # ... and works again when the lockout is over
    clock.now += 301
    alice = await SlixClient("alice@localhost/x", "alice-secret-pw", server.cert_path
                             ).connect(server.port)
    try:
        assert alice.started.is_set()
    finally:
        await alice.close()


async def test_certificate_is_generated_once_with_private_key_0600(
    server: C2SServer, tmp_path: Path
) -> None:
    assert server.cert_path is not None and server.certificate is not None
    key_mode = stat.S_IMODE(server.certificate.key_path.stat().st_mode)
    assert key_mode == 0o600
    cert = x509.load_pem_x509_certificate(server.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert server.fingerprint == fingerprint_of(server.cert_path.read_bytes())
    assert len(server.fingerprint.split(":")) == 32
    # a second server on the same directory reuses it
    again = C2SServer(fake(server), "127.0.0.1", 0, tmp_path / "tls")
    await again.start()
    try:
        assert again.fingerprint == server.fingerprint
    finally:
        await again.close()


async def test_same_resource_twice_replaces_the_old_session(server: C2SServer) -> None:
    first = await SlixClient("bob@localhost/same", "bob-secret-pw", server.cert_path
                             ).connect(server.port)
    second = await SlixClient("bob@localhost/same", "bob-secret-pw", server.cert_path
                              ).connect(server.port)
    try:
        await asyncio.wait_for(first.closed.wait(), 10)
        assert second.started.is_set()
        await second.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    finally:
        await first.close()
        await second.close()


async def test_legacy_session_and_unknown_iqs_get_replies(server: C2SServer) -> None:
    # libpurple always sends the RFC 3921 session IQ and disconnects on an error
    raw = await RawClient.open(server.port)
    try:
        await raw.login(server.cert_path, "bob", "bob-secret-pw")
        raw.send(b"<iq type='set' id='sess'>"
                 b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        reply = await raw.expect(b"id=\"sess\"")
        assert b"type=\"result\"" in reply
        raw.buffer = b""
        raw.send(b"<iq type='get' id='odd'><query xmlns='urn:example:unknown'/></iq>")
        reply = await raw.expect(b"</error>")
        assert b"id=\"odd\"" in reply and b"<service-unavailable" in reply
        raw.buffer = b""
        raw.send(b"<iq type='get' id='vc'><vCard xmlns='vcard-temp'/></iq>")
        reply = await raw.expect(b"</vCard>")
        assert b"<FN>Bob</FN>" in reply
    finally:
        raw.close()
