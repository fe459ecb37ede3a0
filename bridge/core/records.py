"""Payloads carried inside sealed envelopes, one record per envelope kind.

Each record is a frozen value with one ``encode`` and one ``parse``; parsing is
strict (no trailing bytes, no unknown flag bits, UTF-8 checked, lengths bounded)
so every payload has exactly one encoding. Layouts (big-endian):

    direct        sent_at_ms u64 ‖ flags u8 ‖ msgid len u8 ‖ msgid ‖
                  [signed prekey 104 if flags&2] ‖ text (rest)
                  flags: 1 receipt wanted, 2 carries the sender's prekey
                  flags = 4 alone: a chat state (XEP-0085), no message:
                  sent_at_ms u64 ‖ 04 ‖ 00 (empty msgid) ‖ state u8 (1..5) — nothing after
    room          sent_at_ms u64 ‖ room len u8 ‖ room ‖ nick len u8 ‖ nick ‖ text (rest)
    announcement  issued_at u64 ‖ nick len u8 ‖ nick ‖ endpoint len u8 ‖ endpoint ‖
                  prekey count u8 (1..4) ‖ prekeys 104 each
    receipt       count u8 (1..64) ‖ count × (envelope id 32 ‖ msgid len u8 ‖ msgid)

A direct message with flag 8 acts on an earlier message of the conversation, named
by its XMPP message id (``ref``, 1..64 bytes); the act block follows the msgid (and
the prekey, version 1), and what follows it depends on the act:

                  act u8 ‖ ref len u8 (1..64) ‖ ref ‖ ...
                  1 correction  text (rest, 1+ bytes: the whole corrected text)
                  2 reply       author u8 (0 the record's sender, 1 its recipient) ‖
                                text (rest, 1+ bytes)
                  3 reaction    count u8 (0..16) ‖ count × (len u8 (1..32) ‖ UTF-8),
                                distinct — nothing after (0: reactions withdrawn)
                  4 retraction  nothing after
                  5 displayed   nothing after (an XEP-0333 read marker)
                  flag 1 (receipt) only with 1 and 2; flag 4 never.
    presence      sent_at_ms u64 ‖ 10 ‖ 00 (empty msgid) ‖ show u8 (1..6) ‖
                  status len u8 (0..64) ‖ status — nothing after (flags = 16 exactly)
    file chunk    sent_at_ms u64 ‖ 20 ‖ msgid len u8 (1..64) ‖ msgid ‖ chunk
                  (flags = 32 exactly; the chunk's layout is in ``bridge.core.filechunks``)
                  flags = 160 (32 | 128): the file is the sender's avatar
                  (``bridge.core.avatar``), the msgid its SHA-1 in hex
    group         sent_at_ms u64 ‖ 40 ‖ 00 (empty msgid) ‖ group record
                  (flags = 64 exactly; the layouts are in ``bridge.core.groups``)

In version-2 envelopes (sessions, docs/sessions.md §11) the direct message never
carries a prekey (flag 2 is refused: the session's ratchet replaces it), and the
announcement carries signed hybrid prekeys instead:

    announcement  issued_at u64 ‖ nick len u8 ‖ nick ‖ endpoint len u8 ‖ endpoint ‖
    (version 2)   prekey count u8 (1..2) ‖ hybrid prekeys 1288 each
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from bridge.core.acts import MAX_STATUS, TEXT_ACTS, Act, Presence, Show
from bridge.core.envelope import Kind
from bridge.core.errors import LocalProtocolError, MalformedError, NonCanonicalError
from bridge.core.filechunks import FileChunk
from bridge.core.groups import GroupRecord, parse_group
from bridge.core.handshake import HYBRID_PREKEY_SIZE, HybridPrekey
from bridge.core.identity import PREKEY_SIZE, SignedPrekey
from bridge.core.reader import Reader

MAX_SHORT_TEXT: Final = 64  # message ids, nicks, room names
MAX_ENDPOINT: Final = 255
MAX_PREKEYS: Final = 4
MAX_HYBRID_PREKEYS: Final = 2
MAX_RECEIPT_IDS: Final = 64

FLAG_RECEIPT: Final = 1
FLAG_PREKEY: Final = 2
FLAG_CHAT_STATE: Final = 4
FLAG_ACT: Final = 8
FLAG_PRESENCE: Final = 16
FLAG_FILE: Final = 32
FLAG_GROUP: Final = 64
FLAG_AVATAR: Final = 128  # with FLAG_FILE only: the file is the sender's avatar


class ChatState(enum.IntEnum):
    """XEP-0085 chat states; the names are the XML elements, the values the wire codes."""

    ACTIVE = 1
    COMPOSING = 2
    PAUSED = 3
    INACTIVE = 4
    GONE = 5

    @property
    def element(self) -> str:
        return self.name.lower()

    @classmethod
    def from_element(cls, name: str) -> ChatState:
        """The state named by an XEP-0085 element; LocalProtocolError if there is none."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise LocalProtocolError(f"{name!r} is not an XEP-0085 chat state") from None


def _short(text: str, limit: int = MAX_SHORT_TEXT) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > limit:
        raise LocalProtocolError(f"text field longer than {limit} bytes")
    return bytes([len(raw)]) + raw


def _short_field(r: Reader, limit: int = MAX_SHORT_TEXT) -> str:
    """A length-prefixed text field, refused beyond the limit the encoder keeps."""
    n = r.u8()
    if n > limit:
        raise NonCanonicalError(f"text field of {n} bytes exceeds {limit}")
    return _text(r.take(n))


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("text is not valid UTF-8") from exc


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A chat message, or (``chat_state`` set) a typing notification with nothing else:
    no text, receipt, message id or prekey, so a chat state has one encoding; likewise
    a ``presence``. With ``act`` set, an act on an earlier message (text only for a
    correction or reply, where it is required)."""

    sent_at_ms: int
    text: str
    receipt_wanted: bool = False
    message_id: str = ""
    prekey: SignedPrekey | None = None
    chat_state: ChatState | None = None
    act: Act | None = None
    presence: Presence | None = None
    chunk: FileChunk | None = None  # a piece of a file, with the message id that sent it
    group: GroupRecord | None = None  # a private group's state or message, and nothing else
    avatar: bool = False  # the chunk's file is the sender's avatar

    def __post_init__(self) -> None:
        if self.avatar and self.chunk is None:
            raise LocalProtocolError("only a file chunk is marked as an avatar")
        if self.group is not None and (
                self.text or self.receipt_wanted or self.message_id or self.prekey is not None
                or self.chat_state is not None or self.act is not None
                or self.presence is not None or self.chunk is not None):
            raise LocalProtocolError("a group record carries nothing else")
        if self.chunk is not None and (
                self.text or self.receipt_wanted or not self.message_id
                or self.prekey is not None or self.chat_state is not None
                or self.act is not None or self.presence is not None):
            raise LocalProtocolError("a file chunk carries a message id and nothing else")
        alone = self.chat_state is not None or self.presence is not None
        if alone and (self.text or self.receipt_wanted or self.message_id
                      or self.prekey is not None or self.act is not None
                      or (self.chat_state is not None and self.presence is not None)):
            raise LocalProtocolError("a chat state or presence carries nothing else")
        if self.act is not None:
            if self.act.kind in TEXT_ACTS and not self.text:
                raise LocalProtocolError("a correction or reply carries text")
            if self.act.kind not in TEXT_ACTS and (self.text or self.receipt_wanted):
                raise LocalProtocolError("only a correction or reply carries text or a receipt")

    @classmethod
    def presence_of(cls, sent_at_ms: int, presence: Presence) -> DirectMessage:
        return cls(sent_at_ms, "", presence=presence)

    @classmethod
    def state(cls, sent_at_ms: int, chat_state: ChatState) -> DirectMessage:
        return cls(sent_at_ms, "", chat_state=chat_state)

    def encode(self) -> bytes:
        if self.group is not None:
            return struct.pack(">QBB", self.sent_at_ms, FLAG_GROUP, 0) + self.group.encode()
        if self.chunk is not None:
            flags = FLAG_FILE | (FLAG_AVATAR if self.avatar else 0)
            return (struct.pack(">QB", self.sent_at_ms, flags) + _short(self.message_id)
                    + self.chunk.encode())
        if self.chat_state is not None:
            return struct.pack(">QBBB", self.sent_at_ms, FLAG_CHAT_STATE, 0, self.chat_state)
        if self.presence is not None:
            return (struct.pack(">QBBB", self.sent_at_ms, FLAG_PRESENCE, 0, self.presence.show)
                    + _short(self.presence.status, MAX_STATUS))
        flags = ((FLAG_RECEIPT if self.receipt_wanted else 0) | (FLAG_PREKEY if self.prekey else 0)
                 | (FLAG_ACT if self.act else 0))
        out = struct.pack(">QB", self.sent_at_ms, flags) + _short(self.message_id)
        if self.prekey is not None:
            out += self.prekey.encode()
        if self.act is not None:
            out += self.act.encode()
        return out + self.text.encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> DirectMessage:
        r = Reader(data)
        sent_at = r.u64()
        flags = r.u8()
        if flags & FLAG_CHAT_STATE:
            return cls._parse_state(r, sent_at, flags)
        if flags & FLAG_PRESENCE:
            return cls._parse_presence(r, sent_at, flags)
        if flags & FLAG_FILE:
            if flags not in (FLAG_FILE, FLAG_FILE | FLAG_AVATAR):
                raise NonCanonicalError("a file chunk carries no other flag but the avatar's")
            msgid = _short_field(r)
            if not msgid:
                raise MalformedError("a file chunk names the message that sent it")
            return cls(sent_at, "", message_id=msgid, chunk=FileChunk.parse(r),
                       avatar=flags == FLAG_FILE | FLAG_AVATAR)
        if flags & FLAG_GROUP:
            if flags != FLAG_GROUP:
                raise NonCanonicalError("a group record carries no other flag")
            if r.u8() != 0:
                raise NonCanonicalError("a group record carries no message id")
            return cls(sent_at, "", group=parse_group(r))
        if flags & ~(FLAG_RECEIPT | FLAG_PREKEY | FLAG_ACT):
            raise NonCanonicalError("unknown flag bits in a direct message")
        msgid = _short_field(r)
        prekey = SignedPrekey.parse(r.take(PREKEY_SIZE)) if flags & FLAG_PREKEY else None
        act = Act.parse(r) if flags & FLAG_ACT else None
        text = _text(r.rest())
        if act is not None:
            if act.kind in TEXT_ACTS and not text:
                raise MalformedError(f"a {act.kind.name.lower()} without text")
            if act.kind not in TEXT_ACTS and (text or flags & FLAG_RECEIPT):
                raise NonCanonicalError(f"a {act.kind.name.lower()} carries no text or receipt")
        return cls(sent_at, text, bool(flags & FLAG_RECEIPT), msgid, prekey, act=act)

    @classmethod
    def _parse_presence(cls, r: Reader, sent_at: int, flags: int) -> DirectMessage:
        if flags != FLAG_PRESENCE:
            raise NonCanonicalError("a presence carries no other flag")
        if r.u8() != 0:
            raise NonCanonicalError("a presence carries no message id")
        code = r.u8()
        try:
            show = Show(code)
        except ValueError:
            raise MalformedError(f"unknown presence code {code}") from None
        status = _short_field(r, MAX_STATUS)
        r.end()
        return cls.presence_of(sent_at, Presence(show, status))

    @classmethod
    def _parse_state(cls, r: Reader, sent_at: int, flags: int) -> DirectMessage:
        if flags != FLAG_CHAT_STATE:
            raise NonCanonicalError("a chat state carries no other flag")
        if r.u8() != 0:
            raise NonCanonicalError("a chat state carries no message id")
        code = r.u8()
        try:
            state = ChatState(code)
        except ValueError:
            raise MalformedError(f"unknown chat state code {code}") from None
        if r.rest():
            raise NonCanonicalError("a chat state carries no text")
        return cls.state(sent_at, state)


@dataclass(frozen=True, slots=True)
class RoomMessage:
    sent_at_ms: int
    room: str
    nick: str
    text: str

    def encode(self) -> bytes:
        return (struct.pack(">Q", self.sent_at_ms) + _short(self.room) + _short(self.nick)
                + self.text.encode("utf-8"))

    @classmethod
    def parse(cls, data: bytes) -> RoomMessage:
        r = Reader(data)
        sent_at = r.u64()
        room = _short_field(r)
        nick = _short_field(r)
        return cls(sent_at, room, nick, _text(r.rest()))


@dataclass(frozen=True, slots=True)
class Announcement:
    issued_at: int
    prekeys: tuple[SignedPrekey, ...]
    nick: str = ""
    endpoint: str = ""  # e.g. "http://xyz.onion:45069" for direct delivery

    def encode(self) -> bytes:
        if not 1 <= len(self.prekeys) <= MAX_PREKEYS:
            raise LocalProtocolError("an announcement carries 1 to 4 prekeys")
        return (struct.pack(">Q", self.issued_at) + _short(self.nick)
                + _short(self.endpoint, MAX_ENDPOINT) + bytes([len(self.prekeys)])
                + b"".join(p.encode() for p in self.prekeys))

    @classmethod
    def parse(cls, data: bytes) -> Announcement:
        r = Reader(data)
        issued = r.u64()
        nick = _short_field(r)
        endpoint = _short_field(r, MAX_ENDPOINT)
        count = r.u8()
        if not 1 <= count <= MAX_PREKEYS:
            raise MalformedError("an announcement carries 1 to 4 prekeys")
        prekeys = tuple(SignedPrekey.parse(r.take(PREKEY_SIZE)) for _ in range(count))
        r.end()
        return cls(issued, prekeys, nick, endpoint)


@dataclass(frozen=True, slots=True)
class HybridAnnouncement:
    """A version-2 announcement: the identity's signed hybrid prekeys and endpoint."""

    issued_at: int
    prekeys: tuple[HybridPrekey, ...]
    nick: str = ""
    endpoint: str = ""

    def encode(self) -> bytes:
        if not 1 <= len(self.prekeys) <= MAX_HYBRID_PREKEYS:
            raise LocalProtocolError("a version-2 announcement carries 1 or 2 prekeys")
        return (struct.pack(">Q", self.issued_at) + _short(self.nick)
                + _short(self.endpoint, MAX_ENDPOINT) + bytes([len(self.prekeys)])
                + b"".join(p.encode() for p in self.prekeys))

    @classmethod
    def parse(cls, data: bytes) -> HybridAnnouncement:
        r = Reader(data)
        issued = r.u64()
        nick = _short_field(r)
        endpoint = _short_field(r, MAX_ENDPOINT)
        count = r.u8()
        if not 1 <= count <= MAX_HYBRID_PREKEYS:
            raise MalformedError("a version-2 announcement carries 1 or 2 prekeys")
        prekeys = tuple(HybridPrekey.parse(r.take(HYBRID_PREKEY_SIZE)) for _ in range(count))
        r.end()
        return cls(issued, prekeys, nick, endpoint)


@dataclass(frozen=True, slots=True)
class Receipt:
    acked: tuple[tuple[bytes, str], ...]  # (envelope id, sender's message id)

    def encode(self) -> bytes:
        if not 1 <= len(self.acked) <= MAX_RECEIPT_IDS:
            raise LocalProtocolError("a receipt acknowledges 1 to 64 envelopes")
        out = bytes([len(self.acked)])
        for env_id, msgid in self.acked:
            if len(env_id) != 32:
                raise LocalProtocolError("envelope ids are 32 bytes")
            out += env_id + _short(msgid)
        return out

    @classmethod
    def parse(cls, data: bytes) -> Receipt:
        r = Reader(data)
        count = r.u8()
        if not 1 <= count <= MAX_RECEIPT_IDS:
            raise MalformedError("a receipt acknowledges 1 to 64 envelopes")
        acked = tuple((r.take(32), _short_field(r)) for _ in range(count))
        r.end()
        return cls(acked)


Record = DirectMessage | RoomMessage | Announcement | Receipt

_BY_KIND: Final[dict[Kind, type[DirectMessage | RoomMessage | Announcement | Receipt]]] = {
    Kind.DIRECT: DirectMessage,
    Kind.ROOM: RoomMessage,
    Kind.ANNOUNCEMENT: Announcement,
    Kind.RECEIPT: Receipt,
}


def kind_of(record: Record) -> Kind:
    for kind, cls in _BY_KIND.items():
        if isinstance(record, cls):
            return kind
    raise LocalProtocolError("not a record")


def parse_record(kind: Kind, data: bytes, version: int = 1) -> Record | HybridAnnouncement:
    """The record of an envelope's kind, as its format ``version`` lays it out."""
    if version == 2:
        if kind == Kind.ANNOUNCEMENT:
            return HybridAnnouncement.parse(data)
        record = _BY_KIND[kind].parse(data)
        if isinstance(record, DirectMessage) and record.prekey is not None:
            raise NonCanonicalError("a message in a session carries no prekey")
        return record
    return _BY_KIND[kind].parse(data)
