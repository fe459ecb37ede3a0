"""The kkv-style flow without sockets: records, strict JSON, every server refusal."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import crypto, kkv, kkv_records, pow
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    ExpiredError,
    FromFutureError,
    MalformedError,
    OversizeError,
    RemoteProtocolError,
    TruncatedError,
    UnknownVersionError,
    WeakKeyError,
    WeakProofOfWorkError,
)
from bridge.core.identity import Identity

NOW = 1_800_000_000
BITS = 6


def solve(digest: bytes, bits: int) -> int:
    nonce = pow.solve_range(digest, bits, 0, 1 << 24)
    assert nonce is not None
    return nonce


def weak_nonce(digest: bytes, bits: int) -> int:
    return next(n for n in range(1000) if pow.work_bits(digest, n) < bits)


@pytest.fixture
def server() -> kkv.KkvServerState:
    return kkv.KkvServerState(
        os.urandom(32), bits=BITS, challenge_ttl=120, session_ttl=60, max_pending=8
    )


@pytest.fixture
def client() -> Identity:
    return Identity.from_seed(os.urandom(32))


def challenge(
    server: kkv.KkvServerState,
    client: Identity,
    now: int = NOW,
) -> tuple[kkv_records.ChallengeResponse, kkv_records.Challenge]:
    body = json.dumps(server.issue(client.public, now, os.urandom(32)).to_json()).encode()
    return kkv_records.ChallengeResponse.from_json(body)


def exchange(
    server: kkv.KkvServerState,
    client: Identity,
    now: int = NOW,
) -> tuple[kkv_records.SessionOffer, bytes]:
    resp, c = challenge(server, client, now)
    x = os.urandom(32)
    req = kkv.make_exchange(resp, solve(c.digest, c.bits), client.secret_key, x)
    offer = server.exchange(
        kkv_records.ExchangeRequest.from_json(json.dumps(req.to_json()).encode()),
        now,
        os.urandom(16),
        os.urandom(32),
    )
    return kkv_records.SessionOffer.from_json(json.dumps(offer.to_json()).encode()), x


def message(
    server: kkv.KkvServerState, client: Identity, envelope: bytes, now: int = NOW
) -> kkv_records.MessageRequest:
    offer, x = exchange(server, client, now)
    return kkv.make_message(
        offer,
        domain_pk=server.domain_pk,
        client_pk=client.public,
        client_sk=client.secret_key,
        client_x25519_secret=x,
        envelope=envelope,
        now=now,
    )


# --- the happy path ----------------------------------------------------------------------


def test_full_flow_opens_the_envelope_for_the_client(server, client):
    resp, c = challenge(server, client)
    kkv.check_challenge(
        resp, c, domain_pk=server.domain_pk, client_pk=client.public, now=NOW, max_bits=20
    )
    req = message(server, client, b"an envelope")
    opened = server.open(
        kkv_records.MessageRequest.from_json(json.dumps(req.to_json()).encode(), 1000), NOW + 1
    )
    assert opened.envelope == b"an envelope"
    assert opened.client_pk == client.public
    assert server.pending == (1, 0)  # one challenge spent, the session used up


def test_challenge_token_round_trips_and_binds_everything(server, client):
    resp, c = challenge(server, client)
    assert c.domain_pk == server.domain_pk and c.client_pk == client.public
    assert c.bits == BITS and c.expires == NOW + 120
    assert kkv_records.Challenge.parse(c.encode()) == c
    assert len(resp.token) == kkv_records.TOKEN_SIZE == 106


def test_challenge_parse_refusals():
    with pytest.raises(TruncatedError):
        kkv_records.Challenge.parse(bytes(105))
    token = bytearray(kkv_records.Challenge(bytes(32), bytes(32), bytes(32), 1, 1).encode())
    token[0] = 9
    with pytest.raises(UnknownVersionError):
        kkv_records.Challenge.parse(bytes(token))
    token[0] = 1
    token[97] = 41
    with pytest.raises(MalformedError, match="bits"):
        kkv_records.Challenge.parse(bytes(token))


# --- server refusals, in check order -----------------------------------------------------


def _exchange_req(server, client, now=NOW, nonce=None):
    resp, c = challenge(server, client, now)
    n = solve(c.digest, c.bits) if nonce is None else nonce(c)
    return kkv.make_exchange(resp, n, client.secret_key, os.urandom(32))


def _run(server, req, now=NOW):
    return server.exchange(req, now, os.urandom(16), os.urandom(32))


def test_expired_challenge(server, client):
    req = _exchange_req(server, client)
    with pytest.raises(ExpiredError, match="expired"):
        _run(server, req, NOW + 120)


def test_challenge_from_the_future(server, client):
    req = _exchange_req(server, client, now=NOW + 1000)
    with pytest.raises(FromFutureError):
        _run(server, req, NOW)


def test_weak_pow(server, client):
    req = _exchange_req(server, client, nonce=lambda c: weak_nonce(c.digest, c.bits))
    with pytest.raises(WeakProofOfWorkError, match="bits"):
        _run(server, req)


def test_forged_low_cost_token_is_judged_by_the_servers_price(server, client):
    # An attacker rewrites bits=0 in a token; the signature would fail, but the
    # PoW check (cheaper) must already refuse it.
    c = kkv_records.Challenge(server.domain_pk, client.public, os.urandom(32), 0, NOW + 60)
    resp = kkv_records.ChallengeResponse(c.encode(), bytes(64))
    req = kkv.make_exchange(resp, weak_nonce(c.digest, BITS), client.secret_key, os.urandom(32))
    with pytest.raises(WeakProofOfWorkError):
        _run(server, req)


def test_replayed_challenge(server, client):
    req = _exchange_req(server, client)
    _run(server, req)
    with pytest.raises(kkv_records.ReplayedChallengeError):
        _run(server, req)


def test_challenge_from_another_server(server, client):
    other = kkv.KkvServerState(os.urandom(32), bits=BITS)
    req = _exchange_req(other, client)
    with pytest.raises(kkv_records.ForeignChallengeError):
        _run(server, req)


def test_forged_server_signature(server, client):
    req = _exchange_req(server, client)
    bad = kkv_records.ExchangeRequest(req.token, bytes(64), req.nonce, req.client_x25519,
                                      req.signature)
    with pytest.raises(BadSignatureError):
        _run(server, bad)


def test_wrong_client_signature(server, client):
    req = _exchange_req(server, client)
    sig = bytearray(req.signature)
    sig[0] ^= 1
    bad = kkv_records.ExchangeRequest(
        req.token, req.token_signature, req.nonce, req.client_x25519, bytes(sig)
    )
    with pytest.raises(BadSignatureError):
        _run(server, bad)
    _run(server, req)  # a failed attempt does not spend the challenge


def test_client_x25519_swapped_breaks_the_signature(server, client):
    req = _exchange_req(server, client)
    bad = kkv_records.ExchangeRequest(
        req.token,
        req.token_signature,
        req.nonce,
        crypto.x25519_public(os.urandom(32)),
        req.signature,
    )
    with pytest.raises(BadSignatureError):
        _run(server, bad)


def test_low_order_client_x25519(server, client):
    resp, c = challenge(server, client)
    n = solve(c.digest, c.bits)
    low = bytes(32)  # the identity point
    sig = client.sign(kkv_records.exchange_signed_bytes(resp.token, n, low))
    with pytest.raises(WeakKeyError):
        _run(server, kkv_records.ExchangeRequest(resp.token, resp.signature, n, low, sig))


def test_small_order_client_key_gets_no_challenge(server):
    with pytest.raises(WeakKeyError):
        server.issue(bytes(32), NOW, os.urandom(32))


def test_busy_when_pending_tables_are_full(client):
    server = kkv.KkvServerState(os.urandom(32), bits=0, max_pending=2)
    for _ in range(2):
        _run(server, _exchange_req(server, client))
    with pytest.raises(kkv_records.KkvBusyError):
        _run(server, _exchange_req(server, client))
    # once the old ones expire there is room again
    _run(server, _exchange_req(server, client, now=NOW + 200), NOW + 200)


# --- /msg -----------------------------------------------------------------------------------


def test_session_is_single_use(server, client):
    req = message(server, client, b"x")
    server.open(req, NOW)
    with pytest.raises(kkv_records.UnknownSessionError):
        server.open(req, NOW)


def test_expired_session(server, client):
    req = message(server, client, b"x")
    with pytest.raises(ExpiredError):
        server.open(req, NOW + 60)


def test_message_signed_by_someone_else(server, client):
    req = message(server, client, b"x")
    other = Identity.from_seed(os.urandom(32))
    forged = kkv_records.MessageRequest(
        req.session,
        req.ciphertext,
        other.sign(kkv_records.message_signed_bytes(req.session, req.ciphertext)),
    )
    with pytest.raises(BadSignatureError):
        server.open(forged, NOW)
    server.open(req, NOW)  # the genuine one still goes through


def test_ciphertext_not_under_the_session_key(server, client):
    req = message(server, client, b"x")
    ct = bytes(len(req.ciphertext))
    bad = kkv_records.MessageRequest(
        req.session, ct, client.sign(kkv_records.message_signed_bytes(req.session, ct))
    )
    with pytest.raises(DecryptionError):
        server.open(bad, NOW)


def test_client_refuses_an_offer_not_signed_by_the_domain_key(server, client):
    offer, x = exchange(server, client)
    forged = kkv_records.SessionOffer(
        offer.session, crypto.x25519_public(os.urandom(32)), offer.expires, offer.signature
    )
    with pytest.raises(BadSignatureError):
        kkv.make_message(
            forged,
            domain_pk=server.domain_pk,
            client_pk=client.public,
            client_sk=client.secret_key,
            client_x25519_secret=x,
            envelope=b"e",
            now=NOW,
        )


def test_client_refuses_challenges_not_worth_solving(client):
    server = kkv.KkvServerState(os.urandom(32), bits=30)
    resp, c = challenge(server, client)
    with pytest.raises(WeakProofOfWorkError, match="at most 20"):
        kkv.check_challenge(
            resp, c, domain_pk=server.domain_pk, client_pk=client.public, now=NOW, max_bits=20
        )
    other = Identity.from_seed(os.urandom(32))
    with pytest.raises(BadSignatureError, match="another client"):
        kkv.check_challenge(
            resp, c, domain_pk=server.domain_pk, client_pk=other.public, now=NOW, max_bits=40
        )


# --- strict JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"[1]", "object"),
        (b"{", "not valid JSON"),
        (b"\xff{}", "not valid JSON"),
        (b'{"client_pk": "a", "client_pk": "b"}', "twice"),
        (b'{"client_pk": NaN}', "NaN"),
        (b'{"client_pk": 1}', "must be a str"),
        (b"{}", "missing"),
        (b'{"client_pk": "", "x": 1}', "unexpected"),
        (b"[" * 100000, "not valid JSON|object"),
    ],
)
def test_strict_json_refusals(body, match):
    with pytest.raises(MalformedError, match=match):
        kkv_records.parse_json_object(body, {"client_pk": str}, limit=10**6)


def test_bool_is_not_an_int():
    with pytest.raises(MalformedError, match="int"):
        kkv_records.parse_json_object(b'{"index": true}', {"index": int})


def test_oversize_json():
    with pytest.raises(OversizeError):
        kkv_records.parse_json_object(b" " * (kkv_records.SMALL_BODY_LIMIT + 1), {})


@pytest.mark.parametrize("value", ["AAAA", "AAA=", "!!!!" * 11, "A" * 43 + "B=", "QUFB\nQUFB" * 5])
def test_base64_must_be_canonical_and_sized(value):
    with pytest.raises(MalformedError):
        kkv_records.unb64(value, 32, "key")


def test_base64_round_trip():
    data = os.urandom(32)
    assert kkv_records.unb64(kkv_records.b64(data), 32, "key") == data


# --- endpoints ------------------------------------------------------------------------------


def test_parse_endpoint():
    assert kkv.parse_endpoint("http://127.0.0.1:45069/", tor=False) == "http://127.0.0.1:45069"
    onion = "http://" + "a" * 56 + ".onion:45069"
    assert kkv.parse_endpoint(onion, tor=True) == onion
    with pytest.raises(kkv_records.BadEndpointError, match="enable Tor"):
        kkv.parse_endpoint(onion, tor=False)
    for bad in [
        "ftp://x",
        "http://",
        "http://u:p@x/",
        "http://x/?q=1",
        "http://x:99999",
        "http://" + "a" * 300,
    ]:
        with pytest.raises(kkv_records.BadEndpointError):
            kkv.parse_endpoint(bad, tor=True)


# --- fuzzing: arbitrary bodies only ever raise the protocol's own errors --------------------


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=120),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=6)
    ),
    max_leaves=20,
)
_keys = [
    "challenge",
    "challenge_signature",
    "nonce",
    "client_x25519",
    "signature",
    "session",
    "server_x25519",
    "expires",
    "ciphertext",
    "bits",
    "client_pk",
]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.dictionaries(st.sampled_from(_keys), _json_values, max_size=6).map(
            lambda d: json.dumps(d).encode()
        ),
    )
)
def test_parsers_raise_only_protocol_errors(body):
    server = kkv.KkvServerState(b"\x01" * 32, bits=0)
    for parse in (
        kkv_records.ExchangeRequest.from_json,
        kkv_records.SessionOffer.from_json,
        lambda b: kkv_records.MessageRequest.from_json(b, 1000),
        kkv_records.ChallengeResponse.from_json,
    ):
        try:
            rec = parse(body)
        except MalformedError:
            continue
        if isinstance(rec, kkv_records.ExchangeRequest):
            with contextlib.suppress(RemoteProtocolError):  # the family every check raises
                server.exchange(rec, NOW, bytes(16), bytes(range(32)))
