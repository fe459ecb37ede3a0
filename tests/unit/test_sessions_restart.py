"""A contact starting over on purpose (FLAG_RESTART) within the window where an
unflagged handshake counts as the other half of a simultaneous start."""

from __future__ import annotations

import pytest

from bridge.core import handshake as H
from bridge.core import kem
from bridge.core import ratchet as R
from bridge.core import sessions as S
from bridge.core.identity import Identity
from tests.unit.test_sessions_ratchet import (
    AD,
    ALICE,
    BOB,
    KEM_SEED,
    NOW,
    SPK_SECRET,
    fresh,
    send,
)

PREKEY_A = H.make_hybrid_prekey(ALICE, SPK_SECRET, KEM_SEED, NOW + 7 * 86400)
PREKEY_B = H.make_hybrid_prekey(BOB, SPK_SECRET, KEM_SEED, NOW + 7 * 86400)


def _initiate(me: Identity, them: Identity, prekey: H.HybridPrekey, created: int,
              restart: bool) -> tuple[R.Session, bytes]:
    hs = H.initiate(identity=me, responder=them.public, prekey=prekey, one_time=None,
                    now=created, ephemeral_secret=fresh(),
                    encapsulated=kem.encapsulate(prekey.kem), restart=restart)
    return S.initiator_session(hs, fresh()), hs.init


def _respond(me: Identity, prekey: H.HybridPrekey, init: bytes, msg: R.Encrypted) -> R.Session:
    hs = H.respond(identity=me, block=H.InitBlock.parse(init), prekey=prekey,
                   prekey_secret=SPK_SECRET, kem_seed=KEM_SEED)
    fresh_session = R.start_responder(created=hs.created, secret=hs.secret, ad=hs.ad,
                                      session_id=hs.session_id, prekey_secret=SPK_SECRET,
                                      prekey_public=prekey.x25519)
    return R.decrypt(fresh_session, msg.header, msg.body, AD, NOW).state


@pytest.mark.parametrize("restart", [False, True])
def test_a_restart_right_after_a_reply_is_a_reset_only_when_flagged(restart: bool) -> None:
    # Alice starts, Bob answers in her session: confirmed on both sides at NOW.
    a, init = _initiate(ALICE, BOB, PREKEY_B, NOW, restart=False)
    a, m = send(a, b"hello")
    b = _respond(BOB, PREKEY_B, init, m)
    b, r = send(b, b"hi")
    alice = S.begin(S.Peer(), a, NOW)
    alice, _ = S.receive(alice, r.header, r.body, AD, NOW)
    assert alice.active is not None and alice.active.confirmed

    # Bob loses his state a moment later and starts over (a handshake 10 s after)
    b2, init2 = _initiate(BOB, ALICE, PREKEY_A, NOW + 10, restart=restart)
    b2, m2 = send(b2, b"I lost our session")
    incoming = _respond(ALICE, PREKEY_A, init2, m2)
    after, outcome = S.adopt(alice, incoming, NOW + 10, restart=H.InitBlock.parse(init2).restart)
    if restart:
        assert outcome is S.Outcome.RESET
        assert after.active is not None and after.active.session_id == incoming.session_id
    else:  # taken for a late half of a simultaneous start: decided by the keys' order
        assert outcome in (S.Outcome.KEPT_OURS, S.Outcome.TOOK_THEIRS)


def test_a_flagged_but_older_handshake_is_still_stale() -> None:
    """A relay replaying an old restart cannot switch sessions."""
    b_old, init_old = _initiate(BOB, ALICE, PREKEY_A, NOW - 100, restart=True)
    b_old, m_old = send(b_old, b"old restart")
    newer, init_new = _initiate(BOB, ALICE, PREKEY_A, NOW, restart=False)
    newer, m_new = send(newer, b"newer")
    alice, outcome = S.adopt(S.Peer(), _respond(ALICE, PREKEY_A, init_new, m_new), NOW)
    assert outcome is S.Outcome.NEW
    _, outcome = S.adopt(alice, _respond(ALICE, PREKEY_A, init_old, m_old), NOW, restart=True)
    assert outcome is S.Outcome.STALE
