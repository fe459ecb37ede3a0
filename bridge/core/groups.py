"""Private groups: the records of a direct message with flag 64 (docs/groups.md,
layouts in docs/envelope.md §10).

A group is named by a random 16-byte id and described by a *state* its creator
signs: a version (increasing with every change), a name, the creator's key and the
member keys. A *message* names the group and the state version its author holds,
and is signed by its author, so it stays the author's when the creator's daemon
passes it on to the other members (docs/groups.md says why it travels that way).

    state    01 ‖ group id 16 ‖ version u32 (≥ 1) ‖ name (short text, 1..64) ‖
             creator 32 ‖ count u8 (1..32) ‖ count × member 32 (ascending, distinct,
             the creator among them) ‖ signature 64 — nothing after
             signed: SIG_GROUP_STATE ‖ everything from the group id to the last member
    message  02 ‖ group id 16 ‖ version u32 ‖ author 32 ‖ sent_at_ms u64 ‖
             message id (short text, 1..64) ‖ signature 64 ‖ text (the rest, 1+ bytes)
             signed: SIG_GROUP_MESSAGE ‖ group id ‖ version ‖ author ‖ sent_at_ms ‖
             message id ‖ text

Parsing is strict and bounded before anything is kept: a count over 32 is refused
before a member is read, every key is checked as an Ed25519 point, and whatever
parses re-encodes to the same bytes. Signatures are checked by ``verify``, not by
``parse``, so a record's shape and its author are two separate refusals.
"""

from __future__ import annotations

import enum
import itertools
import struct
from dataclasses import dataclass
from typing import Final

from bridge.core import crypto
from bridge.core.acts import short, short_field
from bridge.core.errors import (
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    WeakKeyError,
)
from bridge.core.reader import Reader

GROUP_ID_SIZE: Final = 16
MAX_MEMBERS: Final = 32  # keys in one state, the creator included
MAX_NAME: Final = 64  # bytes of a group's name
MAX_MESSAGE_ID: Final = 64
MAX_VERSION: Final = 0xFFFFFFFF
SIG_GROUP_STATE: Final = b"ParanoIM 2026-12 group state\x00"
SIG_GROUP_MESSAGE: Final = b"ParanoIM 2026-12 group message\x00"


class GroupOp(enum.IntEnum):
    STATE = 1
    MESSAGE = 2


def _key(r: Reader) -> bytes:
    raw = r.take(crypto.KEY_SIZE)
    try:
        crypto.check_ed25519_public(raw)
    except WeakKeyError as exc:
        raise MalformedError(f"a group names a key that is not one: {exc}") from None
    return raw


@dataclass(frozen=True, slots=True)
class GroupState:
    group_id: bytes
    version: int
    name: str
    creator: bytes
    members: tuple[bytes, ...]  # ascending, distinct, the creator among them
    signature: bytes = b""

    def __post_init__(self) -> None:
        if len(self.group_id) != GROUP_ID_SIZE or not 1 <= self.version <= MAX_VERSION:
            raise LocalProtocolError("a group state has a 16-byte id and a version ≥ 1")
        if not self.name or len(self.name.encode()) > MAX_NAME:
            raise LocalProtocolError("a group's name is 1 to 64 bytes")
        if not 1 <= len(self.members) <= MAX_MEMBERS:
            raise LocalProtocolError(f"a group has 1 to {MAX_MEMBERS} members")
        if list(self.members) != sorted(set(self.members)) or self.creator not in self.members:
            raise LocalProtocolError("members are distinct, ascending, the creator among them")

    def signed_part(self) -> bytes:
        return (bytes([GroupOp.STATE]) + self.group_id + struct.pack(">I", self.version)
                + short(self.name, MAX_NAME) + self.creator + bytes([len(self.members)])
                + b"".join(self.members))

    def encode(self) -> bytes:
        if len(self.signature) != crypto.SIGNATURE_SIZE:
            raise LocalProtocolError("a group state is encoded signed")
        return self.signed_part() + self.signature

    @classmethod
    def make(cls, secret_key: bytes, group_id: bytes, version: int, name: str,
             creator: bytes, members: set[bytes] | frozenset[bytes]) -> GroupState:
        """A state signed by the creator (``secret_key`` is theirs)."""
        unsigned = cls(group_id, version, name, creator, tuple(sorted(members | {creator})))
        sig = crypto.sign(secret_key, SIG_GROUP_STATE + unsigned.signed_part()[1:])
        return cls(group_id, version, name, creator, unsigned.members, sig)

    def verify(self) -> None:
        """BadSignatureError unless the creator signed exactly this state."""
        crypto.verify(self.creator, SIG_GROUP_STATE + self.signed_part()[1:], self.signature)

    @classmethod
    def parse_body(cls, r: Reader) -> GroupState:
        group_id = r.take(GROUP_ID_SIZE)
        version = int.from_bytes(r.take(4), "big")
        if version == 0:
            raise MalformedError("a group state's version starts at 1")
        name = short_field(r, MAX_NAME)
        if not name:
            raise MalformedError("a group has a name")
        creator = _key(r)
        count = r.u8()
        if not 1 <= count <= MAX_MEMBERS:
            raise MalformedError(f"a group has 1 to {MAX_MEMBERS} members, not {count}")
        members = tuple(_key(r) for _ in range(count))
        if any(a >= b for a, b in itertools.pairwise(members)):
            raise NonCanonicalError("a group's members are listed ascending, each once")
        if creator not in members:
            raise MalformedError("a group's creator is one of its members")
        signature = r.take(crypto.SIGNATURE_SIZE)
        r.end()
        return cls(group_id, version, name, creator, members, signature)


@dataclass(frozen=True, slots=True)
class GroupMessage:
    group_id: bytes
    version: int  # the state version the author held when writing
    author: bytes
    sent_at_ms: int
    message_id: str
    text: str
    signature: bytes = b""

    def __post_init__(self) -> None:
        if len(self.group_id) != GROUP_ID_SIZE or not 1 <= self.version <= MAX_VERSION:
            raise LocalProtocolError("a group message names a group and a state version")
        if not self.message_id or len(self.message_id.encode()) > MAX_MESSAGE_ID:
            raise LocalProtocolError("a group message has an id of 1 to 64 bytes")
        if not self.text:
            raise LocalProtocolError("a group message has text")

    def _signed(self) -> bytes:
        return (SIG_GROUP_MESSAGE + self.group_id + struct.pack(">I", self.version)
                + self.author + struct.pack(">Q", self.sent_at_ms)
                + short(self.message_id, MAX_MESSAGE_ID) + self.text.encode())

    @classmethod
    def make(cls, secret_key: bytes, author: bytes, group_id: bytes, version: int,
             sent_at_ms: int, message_id: str, text: str) -> GroupMessage:
        unsigned = cls(group_id, version, author, sent_at_ms, message_id, text)
        return cls(group_id, version, author, sent_at_ms, message_id, text,
                   crypto.sign(secret_key, unsigned._signed()))

    def verify(self) -> None:
        """BadSignatureError unless the author signed exactly this message."""
        crypto.verify(self.author, self._signed(), self.signature)

    def encode(self) -> bytes:
        if len(self.signature) != crypto.SIGNATURE_SIZE:
            raise LocalProtocolError("a group message is encoded signed")
        return (bytes([GroupOp.MESSAGE]) + self.group_id + struct.pack(">I", self.version)
                + self.author + struct.pack(">Q", self.sent_at_ms)
                + short(self.message_id, MAX_MESSAGE_ID) + self.signature + self.text.encode())

    @classmethod
    def parse_body(cls, r: Reader) -> GroupMessage:
        group_id = r.take(GROUP_ID_SIZE)
        version = int.from_bytes(r.take(4), "big")
        if version == 0:
            raise MalformedError("a group message names a state version ≥ 1")
        author = _key(r)
        sent_at = r.u64()
        message_id = short_field(r, MAX_MESSAGE_ID)
        if not message_id:
            raise MalformedError("a group message has an id")
        signature = r.take(crypto.SIGNATURE_SIZE)
        raw = r.rest()
        if not raw:
            raise MalformedError("a group message has text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError("text is not valid UTF-8") from exc
        return cls(group_id, version, author, sent_at, message_id, text, signature)


GroupRecord = GroupState | GroupMessage


def parse_group(r: Reader) -> GroupRecord:
    """The group record that follows a flag-64 direct message's empty message id."""
    op = r.u8()
    if op == GroupOp.STATE:
        return GroupState.parse_body(r)
    if op == GroupOp.MESSAGE:
        return GroupMessage.parse_body(r)
    raise MalformedError(f"unknown group record {op}")
