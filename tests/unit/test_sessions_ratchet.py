"""The double ratchet under gossip: reordering, duplicates, loss, crashes and reloads.

Property tests drive two real sessions made by the real handshake through random
schedules and check, after every step: no message opens twice; every message that
arrives and was not given up opens, with its own text; the skipped keys stay inside
their bounds; the sender never uses a message key twice, even across a crash; and a
state reloaded from its bytes carries on the conversation.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.core import crypto, kem
from bridge.core import handshake as H
from bridge.core import ratchet as R
from bridge.core import sessions as S
from bridge.core.checks import MAX_CLOCK_SKEW, MAX_TTL
from bridge.core.errors import (
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    OversizeError,
    SessionError,
    TooFarAheadError,
    TruncatedError,
    UnknownSessionError,
    UnknownVersionError,
)
from bridge.core.identity import Identity

NOW = 1_800_000_000
AD = b"outer header"
ALICE = Identity.from_seed(bytes([0xA1]) * 32)
BOB = Identity.from_seed(bytes([0xB0]) * 32)
SPK_SECRET = bytes(range(0x20, 0x40))
KEM_SEED = bytes(range(0x40, 0x80))
PREKEY = H.make_hybrid_prekey(BOB, SPK_SECRET, KEM_SEED, NOW + 7 * 86400)
_counter = itertools.count(1)


def fresh() -> bytes:
    """Deterministic 'random' secrets: distinct for every call."""
    return crypto.derive("ParanoIM test secrets", next(_counter).to_bytes(8, "big"))


def pair(initiator: Identity = ALICE, responder: Identity = BOB,
         now: int = NOW) -> tuple[R.Session, R.Session]:
    prekey = H.make_hybrid_prekey(responder, SPK_SECRET, KEM_SEED, NOW + 7 * 86400)
    hs = H.initiate(identity=initiator, responder=responder.public, prekey=prekey, one_time=None,
                    now=now, ephemeral_secret=fresh(), encapsulated=kem.encapsulate(prekey.kem))
    a = S.initiator_session(hs, fresh())
    hb = H.respond(identity=responder, block=H.InitBlock.parse(hs.init), prekey=prekey,
                   prekey_secret=SPK_SECRET, kem_seed=KEM_SEED)
    b = R.start_responder(created=hb.created, secret=hb.secret, ad=hb.ad, session_id=hb.session_id,
                          prekey_secret=SPK_SECRET, prekey_public=prekey.x25519)
    return a, b


def send(s: R.Session, text: bytes) -> tuple[R.Session, R.Encrypted]:
    out = R.encrypt(s, text, AD, fresh())
    return out.state, out


def test_constants_match_the_envelope_layer() -> None:
    assert R.MAX_KEY_AGE == MAX_TTL + MAX_CLOCK_SKEW
    assert R.INIT_SIZE == H.INIT_SIZE
    assert R.RESERVE < R.MAX_SKIP <= R.MAX_STORED_KEYS


def test_a_conversation() -> None:
    a, b = pair()
    a, m = send(a, b"hello")
    assert m.init is not None and m.persist and len(m.header) == R.HEADER_SIZE
    with pytest.raises(LocalProtocolError):
        R.encrypt(b, b"too early", AD, fresh())
    d = R.decrypt(b, m.header, m.body, AD, NOW)
    assert d.plaintext == b"hello" and d.new_chain and d.number == 0
    b = d.state
    assert b.confirmed
    b, r = send(b, b"hi back")
    assert r.init is None and r.persist
    a = R.decrypt(a, r.header, r.body, AD, NOW).state
    a, m2 = send(a, b"again")
    assert m2.init is None  # the initiator heard back: no handshake block any more
    assert R.decrypt(b, m2.header, m2.body, AD, NOW).plaintext == b"again"


def test_errors_leave_the_state_usable() -> None:
    a, b = pair()
    a, m = send(a, b"x")
    for header, body, ad, err in [
        (m.header[:-1], m.body, AD, TruncatedError),
        (m.header + b"\0", m.body, AD, OversizeError),
        (m.header, b"short", AD, TruncatedError),
        (m.header, m.body, b"another outer header", UnknownSessionError),
        (m.header[:30] + bytes([m.header[30] ^ 1]) + m.header[31:], m.body, AD,
         UnknownSessionError),
        (m.header, m.body[:-1] + bytes([m.body[-1] ^ 1]), AD, DecryptionError),
    ]:
        with pytest.raises(err):
            R.decrypt(b, header, body, ad, NOW)
    assert R.decrypt(b, m.header, m.body, AD, NOW).plaintext == b"x"


def test_header_nonce_must_be_the_derived_one() -> None:
    a, b = pair()
    hk = a.hks
    assert hk is not None
    a, m = send(a, b"x")
    plain = R.open_header(hk, m.header, a.ad + AD)
    assert plain is not None
    nonce = bytes(24)
    forged = nonce + crypto.aead_encrypt(hk, nonce, plain, a.ad + AD)
    with pytest.raises(NonCanonicalError):
        R.decrypt(b, forged, m.body, AD, NOW)


def test_duplicates_and_replays_are_reported() -> None:
    a, b = pair()
    msgs = []
    for i in range(3):
        a, m = send(a, b"m%d" % i)
        msgs.append(m)
    b = R.decrypt(b, msgs[2].header, msgs[2].body, AD, NOW).state
    b = R.decrypt(b, msgs[0].header, msgs[0].body, AD, NOW).state
    for m in msgs[::2]:
        with pytest.raises(DuplicateMessageError):
            R.decrypt(b, m.header, m.body, AD, NOW)
    assert R.decrypt(b, msgs[1].header, msgs[1].body, AD, NOW).plaintext == b"m1"


def test_skipped_keys_bounded_per_step() -> None:
    a, b = pair()
    a, first = send(a, b"0")
    b = R.decrypt(b, first.header, first.body, AD, NOW).state
    s = a
    for _ in range(R.MAX_SKIP + 1):
        s, _m = send(s, b"lost")
    s, far = send(s, b"far")
    with pytest.raises(TooFarAheadError):
        R.decrypt(b, far.header, far.body, AD, NOW)
    s2 = a
    for _ in range(R.MAX_SKIP):
        s2, _m = send(s2, b"lost")
    s2, edge = send(s2, b"edge")
    d = R.decrypt(b, edge.header, edge.body, AD, NOW)
    assert d.plaintext == b"edge" and d.state.stored_keys == R.MAX_SKIP


def test_skipped_keys_bounded_per_chain() -> None:
    """Two jumps of MAX_SKIP in one chain keep the newest MAX_SKIP keys of it."""
    a, b = pair()
    a, first = send(a, b"0")
    b = R.decrypt(b, first.header, first.body, AD, NOW).state
    dropped = 0
    for _ in range(2):
        for _ in range(R.MAX_SKIP):
            a, _m = send(a, b"lost")
        a, m = send(a, b"seen")
        d = R.decrypt(b, m.header, m.body, AD, NOW)
        b, dropped = d.state, dropped + d.dropped
    assert b.stored_keys == R.MAX_SKIP and dropped == R.MAX_SKIP
    assert min(b.skipped[0].keys) == R.MAX_SKIP + 2  # the first jump's keys went


def test_skipped_keys_expire_with_the_longest_envelope_life() -> None:
    a, b = pair()
    msgs = []
    for i in range(3):
        a, m = send(a, b"%d" % i)
        msgs.append(m)
    b = R.decrypt(b, msgs[2].header, msgs[2].body, AD, NOW).state
    assert b.stored_keys == 2
    d = R.decrypt(b, msgs[0].header, msgs[0].body, AD, NOW + R.MAX_KEY_AGE - 1)
    assert d.plaintext == b"0" and d.dropped == 0
    later, dropped = R.expire(d.state, NOW + R.MAX_KEY_AGE)
    assert dropped == 1 and later.stored_keys == 0
    with pytest.raises(DuplicateMessageError):
        R.decrypt(d.state, msgs[1].header, msgs[1].body, AD, NOW + R.MAX_KEY_AGE)


def test_total_skipped_keys_and_chains_are_capped() -> None:
    a, b = pair()
    total_dropped = 0
    for _ in range(R.MAX_SKIPPED_CHAINS + 3):  # each round trip leaves a chain with keys
        for _ in range(150):
            a, _m = send(a, b"lost")
        a, m = send(a, b"seen")
        d = R.decrypt(b, m.header, m.body, AD, NOW)
        total_dropped += d.dropped
        b, r = send(d.state, b"reply")
        a = R.decrypt(a, r.header, r.body, AD, NOW).state
        assert b.stored_keys <= R.MAX_STORED_KEYS
        assert len(b.skipped) <= R.MAX_SKIPPED_CHAINS
    assert total_dropped > 0 and b.stored_keys == R.MAX_STORED_KEYS


def test_reserved_numbers_survive_a_crash() -> None:
    """The stored form resumes past every number the live state may have used."""
    a, b = pair()
    a, m0 = send(a, b"0")
    stored = a.to_bytes()
    assert m0.persist
    sent = [m0]
    for i in range(1, 10):
        a, m = send(a, b"%d" % i)
        assert not m.persist and a.to_bytes() == stored
        sent.append(m)
    crashed = R.Session.from_bytes(stored)
    crashed, again = send(crashed, b"after the crash")
    assert again.persist
    for m in sent:  # none of the earlier messages' keys was reused
        assert m.header != again.header
    d = R.decrypt(b, again.header, again.body, AD, NOW)
    assert d.number == R.RESERVE and d.plaintext == b"after the crash"
    b = d.state
    for i, m in enumerate(sent):
        assert R.decrypt(b, m.header, m.body, AD, NOW).plaintext == b"%d" % i


def test_break_in_recovery() -> None:
    """A copy of Bob's state at time t follows along until Bob's next DH step reaches
    Alice and she replies: from then on it opens nothing."""
    a, b = pair()
    a, m = send(a, b"0")
    b = R.decrypt(b, m.header, m.body, AD, NOW).state
    thief = b
    a, m1 = send(a, b"1")  # the same chain: the thief reads it
    assert R.decrypt(thief, m1.header, m1.body, AD, NOW).plaintext == b"1"
    b = R.decrypt(b, m1.header, m1.body, AD, NOW).state
    b, r = send(b, b"reply with a fresh ratchet key")
    a = R.decrypt(a, r.header, r.body, AD, NOW).state
    a, m2 = send(a, b"after the round trip")
    assert R.decrypt(b, m2.header, m2.body, AD, NOW).plaintext == b"after the round trip"
    # The thief knew the next header key (header keys run one step ahead), so it can
    # read this header, but lacks Bob's new ratchet secret: no body key.
    with pytest.raises(SessionError):
        R.decrypt(thief, m2.header, m2.body, AD, NOW)
    b = R.decrypt(b, m2.header, m2.body, AD, NOW).state
    assert b.ckr is not None and b.ckr not in thief.to_bytes()
    b, r2 = send(b, b"another turn")
    a = R.decrypt(a, r2.header, r2.body, AD, NOW).state
    a, m3 = send(a, b"and now not even the header")
    with pytest.raises(UnknownSessionError):
        R.decrypt(thief, m3.header, m3.body, AD, NOW)


def test_forward_secrecy() -> None:
    """After a message opened, the state holds nothing that opens it again."""
    a, b = pair()
    for i in range(6):
        secret = fresh()
        if a.cks is None:  # the sending half of a DH step comes first
            assert a.dhr is not None
            before = R.root_step(a.root, crypto.x25519(secret, a.dhr))[1]
        else:
            before = a.cks
        mk, _ck = R.chain_step(before)
        m = R.encrypt(a, b"%d" % i, AD, secret)
        a = m.state
        b = R.decrypt(b, m.header, m.body, AD, NOW).state
        with pytest.raises(DuplicateMessageError):
            R.decrypt(b, m.header, m.body, AD, NOW)
        assert mk not in b.to_bytes() and before not in b.to_bytes()
        if i % 2:
            b, r = send(b, b"r")
            a = R.decrypt(a, r.header, r.body, AD, NOW).state


def test_serialization_is_strict() -> None:
    a, b = pair()
    a, m = send(a, b"x")
    b = R.decrypt(b, m.header, m.body, AD, NOW).state
    for s in (a, b):
        blob = s.to_bytes()
        assert R.Session.from_bytes(blob).to_bytes() == blob
        with pytest.raises(TruncatedError):
            R.Session.from_bytes(blob[:-1])
        with pytest.raises(NonCanonicalError):
            R.Session.from_bytes(blob + b"\0")
        with pytest.raises(UnknownVersionError):
            R.Session.from_bytes(b"\x09" + blob[1:])
        with pytest.raises(NonCanonicalError):
            R.Session.from_bytes(blob[:1] + bytes([blob[1] | 0x80]) + blob[2:])
    with pytest.raises(OversizeError):
        R.Session.from_bytes(bytes(R.MAX_STATE_SIZE + 1))
    with pytest.raises(MalformedError):  # a send chain without a ratchet key pair
        blob = b.to_bytes()
        R.Session.from_bytes(blob[:1] + bytes([0x20 | 0x10]) + blob[2:])


# --- per-contact rules -------------------------------------------------------------------


def test_simultaneous_initiation_converges() -> None:
    a_own, b_from_a = pair(ALICE, BOB)  # Alice starts...
    b_own, a_from_b = pair(BOB, ALICE)  # ...and Bob starts before hearing from her
    pa = S.begin(S.Peer(), a_own, NOW)
    pb = S.begin(S.Peer(), b_own, NOW)
    pa, ma = S.send(pa, b"from alice", AD, fresh())
    pb, mb = S.send(pb, b"from bob", AD, fresh())
    # each receives the other's first message through a new responder session
    da = R.decrypt(a_from_b, mb.header, mb.body, AD, NOW)
    db = R.decrypt(b_from_a, ma.header, ma.body, AD, NOW)
    pa, oa = S.adopt(pa, da.state, NOW)
    pb, ob = S.adopt(pb, db.state, NOW)
    winner = a_own.session_id if ALICE.public < BOB.public else b_own.session_id
    assert pa.active is not None and pb.active is not None
    assert pa.active.session_id == pb.active.session_id == winner
    assert {oa, ob} == {S.Outcome.KEPT_OURS, S.Outcome.TOOK_THEIRS}
    # they talk in the winner both ways
    pa, m = S.send(pa, b"one session", AD, fresh())
    pb, d = S.receive(pb, m.header, m.body, AD, NOW)
    assert d.plaintext == b"one session"
    pb, m = S.send(pb, b"yes", AD, fresh())
    pa, d = S.receive(pa, m.header, m.body, AD, NOW)
    assert d.plaintext == b"yes"
    # the same handshake again is the same session, not a reset
    _again, outcome = S.adopt(pb, db.state, NOW)
    assert outcome is S.Outcome.SAME


def test_a_contact_that_lost_its_state_is_a_reset() -> None:
    a, b = pair()
    pb = S.Peer()
    a, m = send(a, b"before")
    d = R.decrypt(b, m.header, m.body, AD, NOW)
    pb, outcome = S.adopt(pb, d.state, NOW)
    assert outcome is S.Outcome.NEW
    pb, _to_old = S.send(pb, b"to the old alice", AD, fresh())
    a, m_late = send(a, b"late from the old session")
    # Alice loses everything and starts over
    a2, b2 = pair(now=NOW + 5)
    a2, m2 = send(a2, b"I am back")
    d2 = R.decrypt(b2, m2.header, m2.body, AD, NOW)
    pb, outcome = S.adopt(pb, d2.state, NOW + 10)
    assert outcome is S.Outcome.RESET
    assert pb.active is not None and pb.active.session_id == d2.state.session_id
    # a message of the old session still opens, in its retired session
    pb, d = S.receive(pb, m_late.header, m_late.body, AD, NOW + 20)
    assert d.plaintext == b"late from the old session"
    # retired sessions go once nothing sent in them can still arrive
    assert len(S.tidy(pb, NOW + 10 + R.MAX_KEY_AGE).retired) == 0
    blob = pb.to_bytes()
    assert S.Peer.from_bytes(blob).to_bytes() == blob


def test_we_lost_our_state() -> None:
    a, b = pair()
    a, m = send(a, b"x")
    b = R.decrypt(b, m.header, m.body, AD, NOW).state
    b, r = send(b, b"y")
    with pytest.raises(UnknownSessionError):
        S.receive(S.Peer(), r.header, r.body, AD, NOW)
    # starting over: our new session becomes active, the contact will see a reset
    a2, _b2 = pair()
    peer = S.begin(S.Peer(active=a), a2, NOW)
    assert peer.active is a2 and peer.retired[0].session is a
    with pytest.raises(LocalProtocolError):
        S.adopt(peer, a2, NOW)
    carol = Identity.from_seed(bytes([0xC0]) * 32)
    c_own, b_from_c = pair(carol, BOB)
    c_own, mc = send(c_own, b"from carol")
    d = R.decrypt(b_from_c, mc.header, mc.body, AD, NOW)
    with pytest.raises(LocalProtocolError):  # Carol's session in Alice's place
        S.adopt(S.Peer(active=_b2_for_alice()), d.state, NOW)


def _b2_for_alice() -> R.Session:
    a, b = pair()
    a, m = send(a, b"x")
    return R.decrypt(b, m.header, m.body, AD, NOW).state


# --- properties ------------------------------------------------------------------------------


@dataclass
class Side:
    state: R.Session
    stored: bytes  # what the key store holds: written when encrypt says so, and before
    # an opened message is shown
    used: set[tuple[bytes, int]] = field(default_factory=set)


@dataclass
class Sent:
    to: int
    text: bytes
    enc: R.Encrypted
    at: int  # when it was sent: its envelope lives at most MAX_KEY_AGE
    opened: bool = False


def _invariants(s: R.Session) -> None:
    assert s.stored_keys <= R.MAX_STORED_KEYS
    assert len(s.skipped) <= R.MAX_SKIPPED_CHAINS
    assert all(len(c.keys) <= R.MAX_SKIP for c in s.skipped)


def _steps() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    step = st.tuples(
        st.sampled_from(["send"] * 3 + ["deliver"] * 4 + ["reload", "crash", "wait"]),
        st.integers(0, 1), st.integers(0, 10_000))
    return st.lists(step, min_size=20, max_size=120)


def _run(steps: list[tuple[str, int, int]]) -> Iterator[None]:
    a, b = pair()
    sides = [Side(a, a.to_bytes()), Side(b, b.to_bytes())]
    sent: list[Sent] = []
    now = NOW
    dropped = 0
    unopenable = 0
    for action, who, pick in steps:
        side = sides[who]
        if action == "send":
            if side.state.cks is None and side.state.dhr is None:
                continue  # the responder has not heard yet
            before = side.state.to_bytes()
            out = R.encrypt(side.state, b"%d" % len(sent), AD, fresh())
            if out.persist:
                side.stored = out.state.to_bytes()
            else:  # nothing new to write: the stored form is the one before the call
                assert out.state.to_bytes() == before
            assert out.state.dhs_public is not None
            number = (out.state.dhs_public, out.state.ns - 1)
            assert number not in side.used, "a message key used twice"
            side.used.add(number)
            side.state = out.state
            sent.append(Sent(to=1 - who, text=b"%d" % len(sent), enc=out, at=now))
        elif action == "deliver" and sent:
            waiting = [m for m in sent if not m.opened]
            if pick % 3 == 0 or not waiting:
                msg = sent[pick // 3 % len(sent)]  # any message: reordered or a duplicate
            else:  # the oldest or the newest still unopened
                msg = waiting[0] if pick % 3 == 1 else waiting[-1]
            if now >= msg.at + MAX_TTL + MAX_CLOCK_SKEW:
                continue  # the envelope has expired: no node passes it on
            dest = sides[msg.to]
            dest.state, gone = R.expire(dest.state, now)
            dropped += gone
            try:
                d = R.decrypt(dest.state, msg.enc.header, msg.enc.body, AD, now)
            except DuplicateMessageError:
                if not msg.opened:
                    unopenable += 1
                    assert unopenable <= dropped, "a message neither opened nor given up"
                continue
            assert not msg.opened, "a message opened twice"
            assert d.plaintext == msg.text
            msg.opened = True
            dropped += d.dropped
            dest.state = d.state
            dest.stored = d.state.to_bytes()
            _invariants(d.state)
        elif action == "reload":
            side.state = R.Session.from_bytes(side.state.to_bytes())
        elif action == "crash":
            side.state = R.Session.from_bytes(side.stored)
        elif action == "wait":
            now += pick * 30
        yield
    opened = sum(m.opened for m in sent)
    event(f"messages opened: {'none' if not opened else '1-9' if opened < 10 else '10+'}")
    steps_a = len({x[0] for x in sides[0].used})
    event(f"Alice's ratchet keys: {'0-1' if steps_a < 2 else '2-4' if steps_a < 5 else '5+'}")
    if unopenable:
        event("a message given up as lost")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_steps())
def test_reordering_duplicates_loss_and_crashes(steps: list[tuple[str, int, int]]) -> None:
    for _ in _run(steps):
        pass


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(12))), st.sets(st.integers(0, 11), max_size=4))
def test_any_order_opens_everything_delivered(order: list[int], lost: set[int]) -> None:
    """Two chains each way, delivered in any order with some lost: all the rest open."""
    a, b = pair()
    msgs: list[tuple[int, R.Encrypted]] = []
    a, m = send(a, b"first")
    b = R.decrypt(b, m.header, m.body, AD, NOW).state
    for i in range(12):
        if i == 6:
            b, r = send(b, b"turn")
            a = R.decrypt(a, r.header, r.body, AD, NOW).state
        a, m = send(a, b"%d" % i)
        msgs.append((i, m))
    for i in order:
        if i in lost:
            continue
        d = R.decrypt(b, msgs[i][1].header, msgs[i][1].body, AD, NOW)
        assert d.plaintext == b"%d" % i
        b = d.state
        round_trip = R.Session.from_bytes(b.to_bytes())
        assert round_trip.to_bytes() == b.to_bytes()
        b = round_trip
    assert b.stored_keys <= len(lost)  # a lost tail of a chain is never known


def test_session_reset_detected_not_confused_with_errors() -> None:
    """A session message from an unrelated session is UnknownSessionError, never opened."""
    a, _b = pair()
    _a2, b2 = pair()
    a, m = send(a, b"x")
    with pytest.raises(UnknownSessionError):
        R.decrypt(b2, m.header, m.body, AD, NOW)
    assert issubclass(UnknownSessionError, SessionError)
    assert issubclass(UnknownSessionError, DecryptionError)


# --- both sides start at once, in any order of delivery ---------------------------------


def _start(me: Identity, them: Identity, prekey: H.HybridPrekey) -> R.Session:
    hs = H.initiate(identity=me, responder=them.public, prekey=prekey, one_time=None, now=NOW,
                    ephemeral_secret=fresh(), encapsulated=kem.encapsulate(prekey.kem))
    return S.initiator_session(hs, fresh())


def _arrive(peer: S.Peer, me: Identity, prekey: H.HybridPrekey, msg: R.Encrypted
            ) -> tuple[S.Peer, bytes]:
    """What the daemon does with an arriving message (docs/sessions.md §11, step 3)."""
    if msg.init is not None:
        block = H.InitBlock.parse(msg.init)
        sid = crypto.derive(crypto.CTX_SESSION_ID, msg.init)
        assert not peer.is_closed(sid)
        if peer.find(sid) is None:
            hs = H.respond(identity=me, block=block, prekey=prekey, prekey_secret=SPK_SECRET,
                           kem_seed=KEM_SEED)
            fresh_session = R.start_responder(created=hs.created, secret=hs.secret, ad=hs.ad,
                                              session_id=hs.session_id,
                                              prekey_secret=SPK_SECRET,
                                              prekey_public=prekey.x25519)
            d = R.decrypt(fresh_session, msg.header, msg.body, AD, NOW)
            peer, _outcome = S.adopt(peer, d.state, NOW)
            return peer, d.plaintext
    peer, d = S.receive(peer, msg.header, msg.body, AD, NOW)
    return peer, d.plaintext


_PREKEYS = {who.public: H.make_hybrid_prekey(who, SPK_SECRET, KEM_SEED, NOW + 7 * 86400)
            for who in (ALICE, BOB)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 1000)), min_size=2, max_size=30))
def test_simultaneous_starts_converge_in_any_order(events: list[tuple[bool, int]]) -> None:
    people = (ALICE, BOB)
    peers = [S.begin(S.Peer(), _start(ALICE, BOB, _PREKEYS[BOB.public]), NOW),
             S.begin(S.Peer(), _start(BOB, ALICE, _PREKEYS[ALICE.public]), NOW)]
    in_flight: list[tuple[int, bytes, R.Encrypted]] = []
    opened: list[bytes] = []
    count = 0

    def send_from(i: int) -> None:
        nonlocal count
        text = b"%d" % count
        count += 1
        peers[i], out = S.send(peers[i], text, AD, fresh())
        in_flight.append((1 - i, text, out))

    def deliver(k: int) -> None:
        to, text, out = in_flight.pop(k)
        peers[to], plain = _arrive(peers[to], people[to], _PREKEYS[people[to].public], out)
        assert plain == text
        opened.append(text)

    send_from(0)
    send_from(1)
    for is_send, pick in events:
        if is_send:
            send_from(pick % 2)
        elif in_flight:
            deliver(pick % len(in_flight))
    while in_flight:
        deliver(0)
    # one more message each way settles it: both send in the same session
    for i in (0, 1, 0):
        send_from(i)
        deliver(0)
    a, b = peers[0].active, peers[1].active
    assert a is not None and b is not None and a.session_id == b.session_id
    assert sorted(opened, key=int) == [b"%d" % i for i in range(count)]


def test_a_late_handshake_of_a_simultaneous_start_is_not_a_reset() -> None:
    """The contact's handshake made before its first reply in ours is the tie-break's,
    even when it arrives after that reply; one made later is a reset."""
    for created, expected in ((NOW, {S.Outcome.KEPT_OURS, S.Outcome.TOOK_THEIRS}),
                              (NOW + 3600, {S.Outcome.RESET})):
        ours, theirs_copy = pair(ALICE, BOB)
        peer = S.begin(S.Peer(), ours, NOW)
        peer, m = S.send(peer, b"hello", AD, fresh())
        r_state = R.decrypt(theirs_copy, m.header, m.body, AD, NOW).state
        r_state, reply = send(r_state, b"reply")
        peer, _d = S.receive(peer, reply.header, reply.body, AD, NOW + 60)
        assert peer.active is not None and peer.active.confirmed_at == NOW + 60
        prekey = _PREKEYS[ALICE.public]
        hs = H.initiate(identity=BOB, responder=ALICE.public, prekey=prekey, one_time=None,
                        now=created, ephemeral_secret=fresh(),
                        encapsulated=kem.encapsulate(prekey.kem))
        theirs = S.initiator_session(hs, fresh())
        theirs, late = send(theirs, b"late")
        mine = S.responder_session(H.respond(identity=ALICE, block=H.InitBlock.parse(hs.init),
                                             prekey=prekey, prekey_secret=SPK_SECRET,
                                             kem_seed=KEM_SEED), SPK_SECRET)
        d = R.decrypt(mine, late.header, late.body, AD, NOW + 7200)
        _peer, outcome = S.adopt(peer, d.state, NOW + 7200)
        assert outcome in expected


# --- hostile bytes ----------------------------------------------------------------------


def _blobs() -> list[bytes]:
    a, b = pair()
    a, m = send(a, b"x")
    for _ in range(3):
        a, _m = send(a, b"skipped")
    a, m2 = send(a, b"y")
    b = R.decrypt(b, m.header, m.body, AD, NOW).state
    b = R.decrypt(b, m2.header, m2.body, AD, NOW).state
    return [a.to_bytes(), b.to_bytes()]


_BLOBS = _blobs()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_BLOBS), st.integers(0, 10_000), st.integers(1, 255),
       st.integers(0, 3))
def test_a_damaged_stored_state_is_refused_cleanly(blob: bytes, at: int, xor: int,
                                                   how: int) -> None:
    """Any damage gives a MalformedError (or a state that encodes back the same), never
    another exception."""
    i = at % len(blob)
    damaged = [blob[:i] + bytes([blob[i] ^ xor]) + blob[i + 1:], blob[:i], blob + blob[:i + 1],
               blob[:i] + blob[i + 1:]][how]
    try:
        s = R.Session.from_bytes(damaged)
    except MalformedError:
        return
    assert s.to_bytes() == damaged
    peer = S.Peer(active=s)
    assert S.Peer.from_bytes(peer.to_bytes()).to_bytes() == peer.to_bytes()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 1300))
def test_garbage_for_the_parsers(junk: bytes, size: int) -> None:
    data = (junk * (size // max(1, len(junk)) + 1))[:size] if junk else bytes(size)
    for parse in (H.InitBlock.parse, H.HybridPrekey.parse, H.OneTimePrekey.parse,
                  R.Session.from_bytes, S.Peer.from_bytes):
        with contextlib.suppress(MalformedError):
            parse(data)


def _contact_session(created: int) -> tuple[R.Session, R.Encrypted]:
    """A session Alice started at ``created``, as Bob holds it after her first message."""
    prekey = _PREKEYS[BOB.public]
    hs = H.initiate(identity=ALICE, responder=BOB.public, prekey=prekey, one_time=None,
                    now=created, ephemeral_secret=fresh(),
                    encapsulated=kem.encapsulate(prekey.kem))
    _own, first = send(S.initiator_session(hs, fresh()), b"first")
    mine = S.responder_session(H.respond(identity=BOB, block=H.InitBlock.parse(hs.init),
                                         prekey=prekey, prekey_secret=SPK_SECRET,
                                         kem_seed=KEM_SEED), SPK_SECRET)
    return R.decrypt(mine, first.header, first.body, AD, created).state, first


def test_old_handshakes_never_take_over_and_closed_ones_are_refused() -> None:
    peer = S.Peer()
    made = [_contact_session(NOW + 100 * i) for i in range(7)]
    outcomes = []
    for i in (0, 1, 2, 3, 4, 6):
        peer, outcome = S.adopt(peer, made[i][0], NOW + 100 * i)
        outcomes.append(outcome)
    assert outcomes == [S.Outcome.NEW] + [S.Outcome.RESET] * 5
    assert peer.active is not None and peer.active.session_id == made[6][0].session_id
    # six sessions, at most four retired: the first is closed, its handshake refused
    assert len(peer.retired) == S.MAX_RETIRED and len(peer.closed) == 1
    assert peer.is_closed(made[0][0].session_id)
    with pytest.raises(DuplicateMessageError):
        S.adopt(peer, made[0][0], NOW + 1000)
    # a handshake older than the active session's, never seen before: opened, retired
    peer2, outcome = S.adopt(peer, made[5][0], NOW + 1000)
    assert outcome is S.Outcome.STALE
    assert peer2.active is not None and peer2.active.session_id == made[6][0].session_id
    blob = peer2.to_bytes()
    assert S.Peer.from_bytes(blob).to_bytes() == blob
    # once everything has expired, nothing is remembered
    assert S.tidy(peer2, NOW + 1000 + R.MAX_KEY_AGE) == S.Peer(active=peer2.active)
