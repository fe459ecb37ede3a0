"""Records in version-2 envelopes (core.records): the hybrid announcement, and no
prekey inside a session's messages."""

from __future__ import annotations

import pytest

from bridge.core.envelope import Kind
from bridge.core.errors import LocalProtocolError, MalformedError, NonCanonicalError
from bridge.core.handshake import make_hybrid_prekey
from bridge.core.identity import Identity, make_prekey
from bridge.core.records import DirectMessage, HybridAnnouncement, Receipt, parse_record

NOW = 1_800_000_000
BOB = Identity.from_seed(b"\xb0" * 32)
P1 = make_hybrid_prekey(BOB, b"\x01" * 32, b"\x02" * 64, NOW + 86_400)
P2 = make_hybrid_prekey(BOB, b"\x03" * 32, b"\x04" * 64, NOW + 2 * 86_400)


def test_a_hybrid_announcement_round_trips_and_is_bounded() -> None:
    ann = HybridAnnouncement(NOW, (P2, P1), "Bob", "http://bob.example:45069")
    data = ann.encode()
    assert len(data) == 8 + 4 + 25 + 1 + 2 * 1288
    assert parse_record(Kind.ANNOUNCEMENT, data, version=2) == ann
    with pytest.raises(LocalProtocolError):
        HybridAnnouncement(NOW, (P1, P2, P1)).encode()
    with pytest.raises(MalformedError):
        parse_record(Kind.ANNOUNCEMENT, data[:37] + b"\x03" + data[38:], version=2)
    with pytest.raises(MalformedError):  # cut inside a prekey
        parse_record(Kind.ANNOUNCEMENT, data[:-1], version=2)
    with pytest.raises(NonCanonicalError):  # anything after
        parse_record(Kind.ANNOUNCEMENT, data + b"\x00", version=2)


def test_session_messages_carry_no_prekey_and_otherwise_read_as_version_1() -> None:
    plain = DirectMessage(NOW * 1000, "hi", True, "m1")
    assert parse_record(Kind.DIRECT, plain.encode(), version=2) == plain
    with_prekey = DirectMessage(NOW * 1000, "hi", prekey=make_prekey(BOB, b"\x05" * 32,
                                                                     NOW + 3600))
    assert parse_record(Kind.DIRECT, with_prekey.encode()) == with_prekey
    with pytest.raises(NonCanonicalError, match="no prekey"):
        parse_record(Kind.DIRECT, with_prekey.encode(), version=2)
    receipt = Receipt(((b"\x07" * 32, "m1"),))
    assert parse_record(Kind.RECEIPT, receipt.encode(), version=2) == receipt
