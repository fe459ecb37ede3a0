"""Keys held for a message no client has acknowledged yet (ratchet.keep_key,
sessions.keep/release), and the bound on all of one contact's keys (sessions.cap_keys)."""

from __future__ import annotations

import pytest

from bridge.core import ratchet as R
from bridge.core import sessions as S
from bridge.core.errors import DuplicateMessageError
from tests.unit.test_sessions_ratchet import AD, NOW, pair, send


def test_a_held_key_opens_its_message_again_until_dropped() -> None:
    a, b = pair()
    a, m0 = send(a, b"first")
    a, m1 = send(a, b"second")
    d = R.decrypt(b, m0.header, m0.body, AD, NOW)
    b, dropped = R.keep_key(d.state, d.header_key, d.number, d.message_key, NOW)
    assert dropped == 0 and b.stored_keys == 1
    b = R.Session.from_bytes(b.to_bytes())  # a restart: the held key is in the stored state
    again = R.decrypt(b, m0.header, m0.body, AD, NOW)
    assert again.plaintext == b"first" and again.state.stored_keys == 0
    with pytest.raises(DuplicateMessageError):  # opened once more, not twice more
        R.decrypt(again.state, m0.header, m0.body, AD, NOW)
    b = R.drop_key(b, d.header_key, d.number)
    assert b.stored_keys == 0
    with pytest.raises(DuplicateMessageError):
        R.decrypt(b, m0.header, m0.body, AD, NOW)
    assert R.decrypt(b, m1.header, m1.body, AD, NOW).plaintext == b"second"
    assert R.drop_key(b, d.header_key, 7) is b  # nothing held: unchanged


def test_a_held_key_survives_the_dh_steps_that_follow() -> None:
    a, b = pair()
    a, m0 = send(a, b"held")
    d = R.decrypt(b, m0.header, m0.body, AD, NOW)
    b, _ = R.keep_key(d.state, d.header_key, d.number, d.message_key, NOW)
    for turn in range(3):  # the conversation goes on: each side steps its ratchet
        b, r = send(b, b"reply %d" % turn)
        a = R.decrypt(a, r.header, r.body, AD, NOW).state
        a, m = send(a, b"more %d" % turn)
        b = R.decrypt(b, m.header, m.body, AD, NOW).state
    assert R.decrypt(b, m0.header, m0.body, AD, NOW).plaintext == b"held"


def test_keep_and_release_through_a_contacts_sessions() -> None:
    a, b = pair()
    a, m0 = send(a, b"hello")
    d = R.decrypt(b, m0.header, m0.body, AD, NOW)
    peer, _ = S.adopt(S.Peer(), d.state, NOW)
    peer, dropped = S.keep(peer, d.state.session_id, d, NOW)
    assert dropped == 0
    peer = S.Peer.from_bytes(peer.to_bytes())
    _, again = S.receive(peer, m0.header, m0.body, AD, NOW)
    assert again.plaintext == b"hello"
    peer = S.release(peer, d.state.session_id, d.header_key, d.number)
    with pytest.raises(DuplicateMessageError):
        S.receive(peer, m0.header, m0.body, AD, NOW)
    gone = bytes(16)  # a session the contact no longer has: nothing to hold or release
    assert S.keep(peer, gone, d, NOW) == (peer, 0)
    assert S.release(peer, gone, d.header_key, d.number) is peer


def _far_ahead(created: int) -> tuple[R.Session, R.Encrypted, R.Encrypted]:
    """A contact's session whose first message that arrives is its 1,000th: 999 keys
    skipped; and the next message in it."""
    a, b = pair(now=created)
    for _ in range(R.MAX_SKIP - 1):
        a, _m = send(a, b"lost")
    a, last = send(a, b"arrives")
    a, after = send(a, b"after")
    d = R.decrypt(b, last.header, last.body, AD, NOW)
    assert d.state.stored_keys == R.MAX_SKIP - 1
    return d.state, last, after


def test_all_of_a_contacts_keys_are_bounded_the_oldest_sessions_first() -> None:
    peer = S.Peer()
    nexts = []
    for k in range(3):  # three resets: two retired sessions, each holding 999 keys
        state, _last, after = _far_ahead(NOW + k)
        peer, outcome = S.adopt(peer, state, NOW)
        assert outcome is (S.Outcome.NEW if k == 0 else S.Outcome.RESET)
        nexts.append(after)
    assert sum(s.stored_keys for s in peer.sessions()) == 3 * (R.MAX_SKIP - 1)
    capped, dropped = S.cap_keys(peer)
    assert dropped == 3 * (R.MAX_SKIP - 1) - S.MAX_PEER_KEYS
    assert sum(s.stored_keys for s in capped.sessions()) == S.MAX_PEER_KEYS
    active, newer, oldest = capped.sessions()
    assert active.stored_keys == R.MAX_SKIP - 1  # at one age the oldest session gives way
    assert oldest.stored_keys < newer.stored_keys
    # receiving enforces it too, and says how many keys it gave up
    after, d = S.receive(peer, nexts[2].header, nexts[2].body, AD, NOW)
    assert d.plaintext == b"after" and d.dropped == dropped
    assert sum(s.stored_keys for s in after.sessions()) == S.MAX_PEER_KEYS
    assert S.Peer.from_bytes(after.to_bytes()) == after
