"""kkv-style direct delivery: the wire layer — constants, errors, strict JSON and the
records each step carries, with the bytes each signature covers.

The flow that uses them (the server's checks, the client's steps) is
bridge/core/kkv.py; the formats are specified in docs/kkv-api.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any, Final

from bridge.core import crypto, pow
from bridge.core.errors import (
    BadSignatureError,
    LocalProtocolError,
    MalformedError,
    OversizeError,
    ParanoimError,
    RemoteProtocolError,
    TruncatedError,
    UnknownVersionError,
    UserError,
)

VERSION: Final = 1
DEFAULT_PORT: Final = 45069  # kkv's port
DEFAULT_MAX_MESSAGES: Final = 50  # kkv's default inbox cap
# kkv asks 30 bits (minutes of work) because its PoW is the only spam cost; here
# every envelope already carries its own PoW, so the challenge only has to make
# each delivery attempt cost the sender something: ~20 ms on one core.
DEFAULT_BITS: Final = 20
MAX_BITS: Final = 40
DEFAULT_CHALLENGE_TTL: Final = 120
DEFAULT_SESSION_TTL: Final = 60
DEFAULT_MAX_PENDING: Final = 4096  # used challenges and open sessions, each
SESSION_ID_SIZE: Final = 16
RANDOM_SIZE: Final = 32

# Body limits, checked before a byte is parsed. /msg carries the largest
# envelope plus the AEAD tag, base64 (4/3) and a little JSON.
SMALL_BODY_LIMIT: Final = 4096
MSG_BODY_LIMIT: Final = 96 * 1024

_TOKEN: Final = struct.Struct(">B32s32s32sBQ")
TOKEN_SIZE: Final = _TOKEN.size  # 106




# --- errors ----------------------------------------------------------------------------


class ReplayedChallengeError(RemoteProtocolError):
    """This challenge was already spent on a key exchange."""


class UnknownSessionError(RemoteProtocolError):
    """No open session has this id: never issued, already used, or forgotten."""


class ForeignChallengeError(BadSignatureError):
    """The challenge names another server key (issued before a restart, or elsewhere)."""


class KkvBusyError(ParanoimError):
    """The server holds as many pending challenges or sessions as it allows."""


class BadEndpointError(MalformedError, UserError):
    """A direct-delivery endpoint that cannot be used; the message says why."""


# --- strict JSON -------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedError(f"JSON key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise MalformedError(f"JSON constant {name} is not allowed")


def parse_json_object(
    body: bytes,
    fields: dict[str, type],
    optional: frozenset[str] = frozenset(),
    limit: int = SMALL_BODY_LIMIT,
) -> dict[str, Any]:
    """A JSON object with exactly ``fields`` (those in ``optional`` may be left out),
    each of its exact type (a bool is not an int)."""
    if len(body) > limit:
        raise OversizeError(f"request body of {len(body)} bytes exceeds {limit}")
    try:
        obj = json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, MalformedError):
            raise
        raise MalformedError("request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MalformedError("request body must be a JSON object")
    unknown = set(obj) - set(fields)
    if unknown:
        raise MalformedError(f"unexpected field {sorted(unknown)[0]!r}")
    for name, typ in fields.items():
        if name not in obj:
            if name in optional:
                continue
            raise MalformedError(f"field {name!r} is missing")
        value = obj[name]
        if type(value) is not typ:
            raise MalformedError(f"field {name!r} must be a {typ.__name__}")
    return obj


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: str, size: int | None, what: str, max_size: int | None = None) -> bytes:
    """Canonical standard base64 of exactly ``size`` bytes (or at most ``max_size``)."""
    limit = size if size is not None else max_size
    if limit is not None and len(value) > 4 * ((limit + 2) // 3):
        raise MalformedError(f"{what} is too long")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedError(f"{what} is not valid base64") from None
    if b64(data) != value:
        raise MalformedError(f"{what} is not canonical base64")
    if size is not None and len(data) != size:
        raise MalformedError(f"{what} must be {size} bytes")
    return data


def _uint(value: int, what: str, bound: int = 2**64 - 1) -> int:
    if not 0 <= value <= bound:
        raise MalformedError(f"{what} is out of range")
    return value


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """What /pow hands out: work bound to one client key, one server key and a deadline."""

    domain_pk: bytes
    client_pk: bytes
    random: bytes
    bits: int
    expires: int

    def __post_init__(self) -> None:
        if len(self.domain_pk) != 32 or len(self.client_pk) != 32 or len(self.random) != 32:
            raise LocalProtocolError("challenge keys and random must be 32 bytes")
        if not 0 <= self.bits <= MAX_BITS or not 0 <= self.expires < 2**64:
            raise LocalProtocolError("challenge bits or expiry out of range")

    def encode(self) -> bytes:
        return _TOKEN.pack(
            VERSION, self.domain_pk, self.client_pk, self.random, self.bits, self.expires
        )

    @classmethod
    def parse(cls, token: bytes) -> Challenge:
        if len(token) != TOKEN_SIZE:
            raise TruncatedError(f"challenge must be {TOKEN_SIZE} bytes")
        version, domain_pk, client_pk, random, bits, expires = _TOKEN.unpack(token)
        if version != VERSION:
            raise UnknownVersionError(f"challenge version {version} is not supported")
        if bits > MAX_BITS:
            raise MalformedError(f"challenge asks {bits} bits; at most {MAX_BITS} are allowed")
        return cls(domain_pk, client_pk, random, bits, expires)

    @property
    def digest(self) -> bytes:
        """What the proof of work is computed over (pow.work_bits's digest)."""
        return challenge_digest(self.encode())


def challenge_digest(token: bytes) -> bytes:
    return crypto.derive(crypto.CTX_KKV_POW, token)


def sign_challenge(domain_sk: bytes, token: bytes) -> bytes:
    return crypto.sign(domain_sk, crypto.SIG_KKV_CHALLENGE + token)


def verify_challenge(domain_pk: bytes, token: bytes, signature: bytes) -> None:
    crypto.verify(domain_pk, crypto.SIG_KKV_CHALLENGE + token, signature)


@dataclass(frozen=True, slots=True)
class ChallengeResponse:
    """The /pow answer; ``bits`` and ``expires`` repeat the token's for readers."""

    token: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        c = Challenge.parse(self.token)
        return {
            "challenge": b64(self.token),
            "signature": b64(self.signature),
            "bits": c.bits,
            "expires": c.expires,
        }

    @classmethod
    def from_json(cls, body: bytes) -> tuple[ChallengeResponse, Challenge]:
        obj = parse_json_object(
            body, {"challenge": str, "signature": str, "bits": int, "expires": int}
        )
        token = unb64(obj["challenge"], TOKEN_SIZE, "challenge")
        c = Challenge.parse(token)
        if obj["bits"] != c.bits or obj["expires"] != c.expires:
            raise MalformedError("challenge fields disagree with the signed token")
        return cls(token, unb64(obj["signature"], crypto.SIGNATURE_SIZE, "signature")), c


@dataclass(frozen=True, slots=True)
class ExchangeRequest:
    """/exchange_keys: the solved challenge, a fresh X25519 key, the client's signature."""

    token: bytes
    token_signature: bytes
    nonce: int
    client_x25519: bytes
    signature: bytes

    def signed_bytes(self) -> bytes:
        return exchange_signed_bytes(self.token, self.nonce, self.client_x25519)

    def to_json(self) -> dict[str, Any]:
        return {
            "challenge": b64(self.token),
            "challenge_signature": b64(self.token_signature),
            "nonce": self.nonce,
            "client_x25519": b64(self.client_x25519),
            "signature": b64(self.signature),
        }

    @classmethod
    def from_json(cls, body: bytes) -> ExchangeRequest:
        obj = parse_json_object(
            body,
            {
                "challenge": str,
                "challenge_signature": str,
                "nonce": int,
                "client_x25519": str,
                "signature": str,
            },
        )
        return cls(
            token=unb64(obj["challenge"], TOKEN_SIZE, "challenge"),
            token_signature=unb64(
                obj["challenge_signature"], crypto.SIGNATURE_SIZE, "challenge_signature"
            ),
            nonce=_uint(obj["nonce"], "nonce", pow.MAX_NONCE),
            client_x25519=unb64(obj["client_x25519"], crypto.KEY_SIZE, "client_x25519"),
            signature=unb64(obj["signature"], crypto.SIGNATURE_SIZE, "signature"),
        )


def exchange_signed_bytes(token: bytes, nonce: int, client_x25519: bytes) -> bytes:
    return crypto.SIG_KKV_EXCHANGE + token + struct.pack(">Q", nonce) + client_x25519


@dataclass(frozen=True, slots=True)
class SessionOffer:
    """/exchange_keys' answer: the server's half of a one-message X25519 exchange."""

    session: bytes
    server_x25519: bytes
    expires: int
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "session": b64(self.session),
            "server_x25519": b64(self.server_x25519),
            "expires": self.expires,
            "signature": b64(self.signature),
        }

    @classmethod
    def from_json(cls, body: bytes) -> SessionOffer:
        obj = parse_json_object(
            body, {"session": str, "server_x25519": str, "expires": int, "signature": str}
        )
        return cls(
            session=unb64(obj["session"], SESSION_ID_SIZE, "session"),
            server_x25519=unb64(obj["server_x25519"], crypto.KEY_SIZE, "server_x25519"),
            expires=_uint(obj["expires"], "expires"),
            signature=unb64(obj["signature"], crypto.SIGNATURE_SIZE, "signature"),
        )


def session_signed_bytes(
    session: bytes, server_x25519: bytes, client_pk: bytes, client_x25519: bytes, expires: int
) -> bytes:
    # Binding the client's keys means an offer cannot be handed to another client.
    return (
        crypto.SIG_KKV_SESSION
        + session
        + server_x25519
        + client_pk
        + client_x25519
        + struct.pack(">Q", expires)
    )


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """/msg: the envelope encrypted under the session key, signed by the client."""

    session: bytes
    ciphertext: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "session": b64(self.session),
            "ciphertext": b64(self.ciphertext),
            "signature": b64(self.signature),
        }

    @classmethod
    def from_json(cls, body: bytes, max_ciphertext: int) -> MessageRequest:
        obj = parse_json_object(
            body, {"session": str, "ciphertext": str, "signature": str}, limit=MSG_BODY_LIMIT
        )
        return cls(
            session=unb64(obj["session"], SESSION_ID_SIZE, "session"),
            ciphertext=unb64(obj["ciphertext"], None, "ciphertext", max_size=max_ciphertext),
            signature=unb64(obj["signature"], crypto.SIGNATURE_SIZE, "signature"),
        )


def message_signed_bytes(session: bytes, ciphertext: bytes) -> bytes:
    return crypto.SIG_KKV_MESSAGE + session + ciphertext


def session_keys(
    shared: bytes, session: bytes, client_x25519: bytes, server_x25519: bytes
) -> tuple[bytes, bytes]:
    """(AEAD key, nonce). A session carries one message, so a derived nonce is safe."""
    material = shared + session + client_x25519 + server_x25519
    return (
        crypto.derive(crypto.CTX_KKV_SESSION_KEY, material),
        crypto.derive(crypto.CTX_KKV_SESSION_NONCE, material, crypto.AEAD_NONCE_SIZE),
    )


