"""SASL for the c2s listener: SCRAM-SHA-256/SHA-1 (RFC 5802, RFC 7677) and PLAIN.

Sans-IO: the connection hands in the decoded client messages and sends what
comes back. Randomness (the server nonce, the secret that makes fake salts
for unknown users) is passed in, so the RFC test vectors replay exactly.
Every proof is compared with ``hmac.compare_digest``. No channel binding is
offered (no -PLUS mechanisms), so a client asking for it is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

SASL_NS: Final = "urn:ietf:params:xml:ns:xmpp-sasl"
SCRAM_HASHES: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
MECHANISMS: Final = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")  # strongest first
DEFAULT_ITERATIONS: Final = 4096


class SaslError(Exception):
    """Ends one SASL exchange with ``<failure><condition/>``; the stream goes on."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a SCRAM server stores for one user (RFC 5802 §3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def derive_credentials(
    hash_name: str, password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS
) -> ScramCredentials:
    # SASLprep is not applied: the daemon's passwords are random ASCII.
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return ScramCredentials(salt, iterations, hashlib.new(hash_name, client_key).digest(),
                            server_key)


def b64decode(data: bytes | str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SaslError("incorrect-encoding", "bad base64") from exc


def _decode_saslname(name: str) -> str:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise SaslError("malformed-request", "bad escape in user name")
    return name.replace("=2C", ",").replace("=3D", "=")


def _attributes(message: str) -> list[tuple[str, str]]:
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslError("malformed-request", "bad SCRAM attribute")
        pairs.append((part[0], part[2:]))
    return pairs


def _printable_nonce(nonce: str) -> bool:
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


class ScramServer:
    """One SCRAM exchange: ``first()`` then ``final()``; ``username`` after ``first()``.

    ``lookup(username)`` returns the user's credentials or None; for an unknown
    user the exchange carries on with a fake salt derived from ``secret`` so a
    guesser cannot tell unknown users from wrong passwords, and then fails.
    """

    def __init__(
        self,
        mechanism: str,
        lookup: Callable[[str], ScramCredentials | None],
        server_nonce: str,
        secret: bytes,
    ) -> None:
        if mechanism not in SCRAM_HASHES:
            raise ValueError(f"not a SCRAM mechanism: {mechanism}")
        if not _printable_nonce(server_nonce):
            raise ValueError("server nonce must be printable ASCII without commas")
        self.mechanism = mechanism
        self._hash = SCRAM_HASHES[mechanism]
        self._lookup = lookup
        self._server_nonce = server_nonce
        self._secret = secret
        self.username = ""
        self.authzid = ""
        self._creds: ScramCredentials | None = None
        self._known = False
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def first(self, client_first: bytes) -> bytes:
        try:
            text = client_first.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SaslError("incorrect-encoding", "not UTF-8") from exc
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise SaslError("malformed-request", "no GS2 header")
        flag, authzid, bare = parts
        if flag.startswith("p="):
            raise SaslError("malformed-request", "channel binding is not offered here")
        if flag not in ("n", "y"):
            raise SaslError("malformed-request", "bad channel binding flag")
        if authzid:
            if not authzid.startswith("a="):
                raise SaslError("malformed-request", "bad authorization identity")
            self.authzid = _decode_saslname(authzid[2:])
        attrs = _attributes(bare)
        if attrs[0][0] == "m":
            raise SaslError("malformed-request", "unsupported mandatory extension")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            raise SaslError("malformed-request", "expected n= and r=")
        self.username = _decode_saslname(attrs[0][1])
        client_nonce = attrs[1][1]
        if not self.username or not _printable_nonce(client_nonce):
            raise SaslError("malformed-request", "empty user name or bad nonce")
        creds = self._lookup(self.username)
        self._known = creds is not None
        if creds is None:
            fake_salt = hmac.new(self._secret, self.username.encode(), "sha256").digest()[:16]
            creds = ScramCredentials(fake_salt, DEFAULT_ITERATIONS, b"", b"")
        self._creds = creds
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        salt = base64.b64encode(creds.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={creds.iterations}"
        return self._server_first.encode("ascii")

    def final(self, client_final: bytes) -> bytes:
        if self._creds is None:
            raise SaslError("malformed-request", "SCRAM final message before the first")
        try:
            text = client_final.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SaslError("incorrect-encoding", "not UTF-8") from exc
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise SaslError("malformed-request", "no proof")
        attrs = _attributes(without_proof)
        if len(attrs) < 2 or attrs[0][0] != "c" or attrs[1][0] != "r":
            raise SaslError("malformed-request", "expected c= and r=")
        if b64decode(attrs[0][1]) != self._gs2_header.encode("utf-8"):
            raise SaslError("malformed-request", "channel binding data does not match")
        if not hmac.compare_digest(attrs[1][1].encode(), self._nonce.encode()):
            raise SaslError("malformed-request", "nonce does not match")
        proof = b64decode(proof_b64)
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        creds = self._creds
        signature = hmac.new(creds.stored_key, auth_message.encode("utf-8"), self._hash).digest()
        if len(proof) != len(signature):
            raise SaslError("not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        computed = hashlib.new(self._hash, client_key).digest()
        ok = hmac.compare_digest(computed, creds.stored_key)
        if not (ok and self._known):
            raise SaslError("not-authorized")
        server_sig = hmac.new(creds.server_key, auth_message.encode("utf-8"), self._hash).digest()
        return b"v=" + base64.b64encode(server_sig)


def parse_plain(message: bytes) -> tuple[str, str, str]:
    """``authzid NUL authcid NUL password`` (RFC 4616) -> (authzid, user, password)."""
    try:
        authzid, user, password = message.decode("utf-8").split("\x00")
    except (UnicodeDecodeError, ValueError) as exc:
        raise SaslError("malformed-request", "bad PLAIN message") from exc
    if not user or not password:
        raise SaslError("malformed-request", "empty user name or password")
    return authzid, user, password
