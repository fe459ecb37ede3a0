"""kkv-style direct delivery: record formats, the server's checks, the client's steps.

Sans-IO: time and randomness come in as arguments, bytes and records go out; the
aiohttp shell is bridge/net/kkv.py. One flow carries one message, and every key
in it but the server's domain key lives for that one message (kkv's policy):

    client (throwaway or identity Ed25519 key C)     server (domain key D, new each start)
    POST /pow {client_pk}                      ->    token = v‖D‖C‖random‖bits‖expires,
                                               <-    sig_D(token)
    solve: work_bits(derive(CTX_KKV_POW, token), nonce) >= bits
    POST /exchange_keys {token, sig_D, nonce, client_x25519, sig_C}
        checks, cheapest first: size → expiry → PoW → replay → sig_D → sig_C
                                               <-    session id, server_x25519, expires, sig_D
    POST /msg {session, ciphertext, sig_C}
        checks: size → session → expiry → sig_C → AEAD → (envelope checks, by the shell)

The challenge is stateless until used (the server signs it instead of keeping
it), so /pow costs the server one signature and no memory; a used challenge is
remembered until it expires so it cannot be spent twice. Sessions are single-use.

JSON carries binary fields as standard base64 with padding; parsing is strict:
an object with exactly the expected keys, exact types, canonical base64.
kkv's own byte formats are not public; these are ours (docs/kkv-api.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.core import crypto, pow
from bridge.core.errors import (
    BadSignatureError,
    ExpiredError,
    FromFutureError,
    LocalProtocolError,
    WeakProofOfWorkError,
)
from bridge.core.kkv_records import (
    DEFAULT_BITS,
    DEFAULT_CHALLENGE_TTL,
    DEFAULT_MAX_PENDING,
    DEFAULT_SESSION_TTL,
    MAX_BITS,
    MSG_BODY_LIMIT,
    RANDOM_SIZE,
    SESSION_ID_SIZE,
    BadEndpointError,
    Challenge,
    ChallengeResponse,
    ExchangeRequest,
    ForeignChallengeError,
    KkvBusyError,
    MessageRequest,
    ReplayedChallengeError,
    SessionOffer,
    UnknownSessionError,
    exchange_signed_bytes,
    message_signed_bytes,
    session_keys,
    session_signed_bytes,
    sign_challenge,
    verify_challenge,
)

# --- the server ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Session:
    client_pk: bytes
    client_x25519: bytes
    server_secret: bytes
    server_x25519: bytes
    expires: int


@dataclass(frozen=True, slots=True)
class Opened:
    """A message that passed the transport checks: the envelope bytes and who sent them."""

    envelope: bytes
    client_pk: bytes


class KkvServerState:
    """The server's side of the flow: issue challenges, accept exchanges, open messages.

    Holds only what replay protection needs (spent challenges until they expire)
    and open sessions; both are bounded and purged by time.
    """

    def __init__(
        self,
        domain_seed: bytes,
        *,
        bits: int = DEFAULT_BITS,
        challenge_ttl: int = DEFAULT_CHALLENGE_TTL,
        session_ttl: int = DEFAULT_SESSION_TTL,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_ciphertext: int = MSG_BODY_LIMIT,
    ) -> None:
        if not 0 <= bits <= MAX_BITS:
            raise LocalProtocolError(f"challenge cost must be 0..{MAX_BITS} bits")
        self.domain_pk, self._domain_sk = crypto.ed25519_keypair(domain_seed)
        self.bits = bits
        self.challenge_ttl = challenge_ttl
        self.session_ttl = session_ttl
        self.max_pending = max_pending
        self.max_ciphertext = max_ciphertext
        self._spent: dict[bytes, int] = {}  # challenge random -> its expiry
        self._sessions: dict[bytes, _Session] = {}

    @property
    def pending(self) -> tuple[int, int]:
        """(spent challenges remembered, open sessions)."""
        return len(self._spent), len(self._sessions)

    def purge(self, now: int) -> None:
        self._spent = {r: t for r, t in self._spent.items() if t > now}
        self._sessions = {s: v for s, v in self._sessions.items() if v.expires > now}

    def _make_room(self, now: int) -> None:
        if len(self._spent) < self.max_pending and len(self._sessions) < self.max_pending:
            return
        self.purge(now)
        if len(self._spent) >= self.max_pending or len(self._sessions) >= self.max_pending:
            raise KkvBusyError("the server holds too many pending exchanges; try again later")

    # /pow
    def issue(self, client_pk: bytes, now: int, random: bytes) -> ChallengeResponse:
        crypto.check_ed25519_public(client_pk)
        if len(random) != RANDOM_SIZE:
            raise LocalProtocolError("challenge random must be 32 bytes")
        token = Challenge(
            self.domain_pk, client_pk, random, self.bits, now + self.challenge_ttl
        ).encode()
        return ChallengeResponse(token, sign_challenge(self._domain_sk, token))

    # /exchange_keys
    def exchange(
        self, req: ExchangeRequest, now: int, session: bytes, server_secret: bytes
    ) -> SessionOffer:
        """Run the checks cheapest first; on success open a one-message session."""
        c = Challenge.parse(req.token)
        if c.expires <= now:
            raise ExpiredError(f"challenge expired {now - c.expires} s ago; ask /pow again")
        if c.expires > now + self.challenge_ttl:
            raise FromFutureError("challenge expires later than this server ever allows")
        # The token is not authenticated yet: judge the work by our own price,
        # so a forged token cannot lower it and reach the signature check cheaply.
        need = max(c.bits, self.bits)
        have = pow.work_bits(c.digest, req.nonce)
        if have < need:
            raise WeakProofOfWorkError(f"proof of work has {have} bits; {need} are required")
        if c.random in self._spent:
            raise ReplayedChallengeError("this challenge was already used; ask /pow again")
        if not crypto.equal(c.domain_pk, self.domain_pk):
            raise ForeignChallengeError(
                "challenge was issued under another server key; ask /pow again"
            )
        verify_challenge(self.domain_pk, req.token, req.token_signature)
        crypto.verify(c.client_pk, req.signed_bytes(), req.signature)
        self._make_room(now)
        server_x25519 = crypto.x25519_public(server_secret)
        crypto.x25519(server_secret, req.client_x25519)  # refuses low-order client keys
        if len(session) != SESSION_ID_SIZE:
            raise LocalProtocolError("session id must be 16 bytes")
        self._spent[c.random] = c.expires
        expires = now + self.session_ttl
        self._sessions[session] = _Session(
            c.client_pk, req.client_x25519, server_secret, server_x25519, expires
        )
        sig = crypto.sign(
            self._domain_sk,
            session_signed_bytes(session, server_x25519, c.client_pk, req.client_x25519, expires),
        )
        return SessionOffer(session, server_x25519, expires, sig)

    # /msg
    def open(self, req: MessageRequest, now: int) -> Opened:
        """Check and decrypt; the session is spent only when everything passes."""
        s = self._sessions.get(req.session)
        if s is None:
            raise UnknownSessionError("no open session with this id; run /exchange_keys again")
        if s.expires <= now:
            del self._sessions[req.session]
            raise ExpiredError("session expired; run /pow and /exchange_keys again")
        crypto.verify(s.client_pk, message_signed_bytes(req.session, req.ciphertext), req.signature)
        key, nonce = session_keys(
            crypto.x25519(s.server_secret, s.client_x25519),
            req.session,
            s.client_x25519,
            s.server_x25519,
        )
        plain = crypto.aead_decrypt(
            key, nonce, req.ciphertext, crypto.SIG_KKV_MESSAGE + req.session
        )
        del self._sessions[req.session]
        return Opened(plain, s.client_pk)


# --- the client ----------------------------------------------------------------------------


def check_challenge(
    resp: ChallengeResponse,
    c: Challenge,
    *,
    domain_pk: bytes,
    client_pk: bytes,
    now: int,
    max_bits: int,
) -> None:
    """Refuse a challenge that is not for us, not from this server, or not worth solving."""
    if not crypto.equal(c.domain_pk, domain_pk):
        raise ForeignChallengeError("challenge is signed for another server key")
    verify_challenge(domain_pk, resp.token, resp.signature)
    if not crypto.equal(c.client_pk, client_pk):
        raise BadSignatureError("challenge is bound to another client key")
    if c.expires <= now:
        raise ExpiredError("the server handed out an already expired challenge")
    if c.bits > max_bits:
        raise WeakProofOfWorkError(
            f"the endpoint asks {c.bits} bits of work; this client pays at most {max_bits}"
        )


def make_exchange(
    resp: ChallengeResponse, nonce: int, client_sk: bytes, client_x25519_secret: bytes
) -> ExchangeRequest:
    client_x25519 = crypto.x25519_public(client_x25519_secret)
    sig = crypto.sign(client_sk, exchange_signed_bytes(resp.token, nonce, client_x25519))
    return ExchangeRequest(resp.token, resp.signature, nonce, client_x25519, sig)


def make_message(
    offer: SessionOffer,
    *,
    domain_pk: bytes,
    client_pk: bytes,
    client_sk: bytes,
    client_x25519_secret: bytes,
    envelope: bytes,
    now: int,
) -> MessageRequest:
    """Check the server's offer, then encrypt and sign ``envelope`` for that one session."""
    client_x25519 = crypto.x25519_public(client_x25519_secret)
    crypto.verify(
        domain_pk,
        session_signed_bytes(
            offer.session, offer.server_x25519, client_pk, client_x25519, offer.expires
        ),
        offer.signature,
    )
    if offer.expires <= now:
        raise ExpiredError("the server's session offer has already expired")
    shared = crypto.x25519(client_x25519_secret, offer.server_x25519)
    key, nonce = session_keys(shared, offer.session, client_x25519, offer.server_x25519)
    ct = crypto.aead_encrypt(key, nonce, envelope, crypto.SIG_KKV_MESSAGE + offer.session)
    return MessageRequest(
        offer.session, ct, crypto.sign(client_sk, message_signed_bytes(offer.session, ct))
    )


# --- endpoints -----------------------------------------------------------------------------


def is_onion_host(host: str) -> bool:
    return host.lower().rstrip(".").endswith(".onion")


def parse_endpoint(url: str, *, tor: bool) -> str:
    """The endpoint's base URL without a trailing slash, or BadEndpointError.

    ``.onion`` endpoints are usable only through Tor: without it they would be
    looked up in ordinary DNS, which leaks the name and cannot succeed.
    """
    if len(url) > 255:
        raise BadEndpointError("the direct-delivery endpoint is longer than 255 characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise BadEndpointError(f"{url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise BadEndpointError(f"endpoint {url!r} must start with http:// or https://")
    if not host:
        raise BadEndpointError(f"endpoint {url!r} names no host")
    if parts.username is not None or parts.query or parts.fragment:
        raise BadEndpointError(
            f"endpoint {url!r} must not carry credentials, a query or a fragment"
        )
    if is_onion_host(host) and not tor:
        raise BadEndpointError(
            f"endpoint {host} is a Tor onion address; enable Tor to deliver there"
        )
    return url.rstrip("/")
