"""The error families of ParanoIM.

Two families, as in h11: a *protocol* error says who broke the rules
(``RemoteProtocolError``: bytes that arrived; ``LocalProtocolError``: our own
caller), and a *user* error (``UserError``) carries a message a person can act
on. Some errors are both: a mistyped address is the user's input and a
malformed field, so it inherits from both families.

Every rejection path of the protocol core has its own type, so tests, logs and
peers' ban decisions can tell them apart.
"""

from __future__ import annotations


class ParanoimError(Exception):
    """Base class of every error this project raises on purpose."""


class UserError(ParanoimError):
    """Something a person can fix; ``str(err)`` says what to do."""


class LocalProtocolError(ParanoimError):
    """Our own code asked for something the protocol forbids (a bug or bad argument)."""


class RemoteProtocolError(ParanoimError):
    """Data from outside broke the rules; the sender is at fault."""


# --- malformed bytes ---------------------------------------------------------


class MalformedError(RemoteProtocolError):
    """The bytes are not a valid encoding."""


class TruncatedError(MalformedError):
    """The input ends before the record does."""


class OversizeError(MalformedError):
    """The input is larger than the record may ever be."""


class NonCanonicalError(MalformedError):
    """The input decodes, but not from its one canonical encoding."""


class UnknownVersionError(MalformedError):
    """A version this implementation does not speak."""


class UnknownKindError(MalformedError):
    """A record kind this implementation does not know."""


# --- addresses and keys ------------------------------------------------------


class BadAddressError(MalformedError, UserError):
    """An address that cannot be used; the message says what is wrong with it."""


class AddressLengthError(BadAddressError):
    pass


class AddressAlphabetError(BadAddressError):
    pass


class AddressChecksumError(BadAddressError):
    pass


class AddressVersionError(BadAddressError):
    pass


class WeakKeyError(RemoteProtocolError):
    """A public key that is small-order, non-canonical or otherwise unsafe."""


# --- time --------------------------------------------------------------------


class ExpiredError(RemoteProtocolError):
    """The envelope's expiry time has passed."""


class FromFutureError(RemoteProtocolError):
    """A time further in the future than the protocol and the skew bound allow."""


# --- proof of work -----------------------------------------------------------


class WeakProofOfWorkError(RemoteProtocolError):
    """The proof of work has fewer leading zero bits than required."""


class PowCancelledError(UserError):
    """Proof of work was cancelled before a solution was found."""

    def __init__(self, msg: str = "sending was cancelled while computing proof of work") -> None:
        super().__init__(msg)


class BadPeerError(UserError):
    """A peer address that is not ``host:port`` with a usable host and port."""


# --- sealing -----------------------------------------------------------------


class DecryptionError(RemoteProtocolError):
    """The ciphertext does not open with any of our keys: not for us, or tampered with."""


class BadSignatureError(RemoteProtocolError):
    """The inner record's signature does not verify."""


class ReaddressedError(BadSignatureError):
    """The signature is valid for another recipient: the record was re-sealed to us."""


# --- invitations ---------------------------------------------------------------


class BadInviteError(MalformedError, UserError):
    """An invitation link that cannot be used; the message says why."""


# --- sessions (docs/sessions.md) -------------------------------------------------


class SessionError(RemoteProtocolError):
    """A session message that cannot be used; the subclass says why."""


class UnknownSessionError(SessionError, DecryptionError):
    """The header opens with none of the session's header keys: another session (the
    contact started over, or we lost ours), or not for us."""


class DuplicateMessageError(SessionError):
    """The message's key is gone: it was opened before (a duplicate or a replay), or
    given up as lost. It is never opened twice."""


class TooFarAheadError(SessionError):
    """The message number is further ahead than the session will skip in one step."""


class UnknownPrekeyError(SessionError):
    """A handshake names a prekey or one-time prekey we do not hold (used up or deleted)."""


class HandshakeError(SessionError, DecryptionError):
    """A handshake whose sealed identity does not open: tampered with, or not for us."""
