"""Several chat messages in one session envelope (docs/sessions.md §11.1).

A burst of messages to one contact — a person pasting lines, a client flushing its
queue after a reconnect, a program talking to a program — would otherwise cost one
envelope each: one stamp, one ratchet step, one signature, one store and one
announcement per line, on both daemons and on every relay. While one envelope to a
contact is being sealed, the daemon queues what follows and seals it as one batch.

The layout, a version-2 direct message whose flags are exactly 2 (flag 2, "carries a
prekey", is refused in sessions, so no single message has this encoding):

    batch    sent_at_ms u64 (the first record's) ‖ 02 ‖ count u8 (2..MAX_RECORDS) ‖
             count × (length u16 (1..) ‖ record)

Each record is a version-2 direct message as it would travel alone: a chat message
or an act on one (correction, reply, reaction, retraction, marker) — never a chat
state, presence, file chunk, group record, confirmation or batch. Records keep their
own ``sent_at_ms``, message id and receipt flag.

Each record has its own id (``record_id``): the envelope's for a message alone, for a
batch one derived from the envelope's and the record's place. Both daemons compute
it; it names the message in receipts, in the archive and in the record of what was
shown, so exactly-once holds per record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import blake3

from bridge.core.envelope import Kind
from bridge.core.errors import LocalProtocolError, MalformedError, NonCanonicalError
from bridge.core.reader import Reader
from bridge.core.records import (
    FLAG_PREKEY,
    DirectMessage,
    HybridAnnouncement,
    Record,
    parse_record,
)

MAX_RECORDS: Final = 32
MAX_BATCH_BYTES: Final = 3_000  # what one batch carries at most: the 4 KiB bucket
_RECORD_ID: Final = b"paranoim/v2/record-id"


def batchable(msg: DirectMessage) -> bool:
    """A chat message or an act on one, which may travel in a batch."""
    return (msg.chat_state is None and msg.presence is None and msg.chunk is None
            and msg.group is None and msg.prekey is None and not msg.avatar
            and bool(msg.text or msg.act is not None))


def record_id(envelope_id: bytes, index: int, count: int) -> bytes:
    """The id of record ``index`` of an envelope carrying ``count`` records: the
    envelope's own id when it carries one."""
    if count == 1:
        return envelope_id
    return blake3.blake3(_RECORD_ID + envelope_id + bytes([index])).digest()


@dataclass(frozen=True, slots=True)
class Batch:
    records: tuple[DirectMessage, ...]

    def __post_init__(self) -> None:
        if not 2 <= len(self.records) <= MAX_RECORDS:
            raise LocalProtocolError(f"a batch carries 2 to {MAX_RECORDS} messages")
        if not all(batchable(r) for r in self.records):
            raise LocalProtocolError("a batch carries chat messages and acts only")

    def encode(self) -> bytes:
        return encode_batch([r.encode() for r in self.records], self.records[0].sent_at_ms)

    @classmethod
    def parse(cls, data: bytes) -> Batch:
        r = Reader(data)
        sent_at = r.u64()
        if r.u8() != FLAG_PREKEY:
            raise NonCanonicalError("not a batch")
        count = r.u8()
        if not 2 <= count <= MAX_RECORDS:
            raise MalformedError(f"a batch carries 2 to {MAX_RECORDS} messages, not {count}")
        records = []
        for _ in range(count):
            n = r.u16()
            if n == 0:
                raise MalformedError("an empty record in a batch")
            msg = DirectMessage.parse(r.take(n))
            if not batchable(msg):
                raise NonCanonicalError("a batch carries chat messages and acts only")
            records.append(msg)
        r.end()
        if records[0].sent_at_ms != sent_at:
            raise NonCanonicalError("a batch is dated by its first message")
        return cls(tuple(records))


def encode_batch(encoded: list[bytes], sent_at_ms: int) -> bytes:
    """The batch of records already encoded (``DirectMessage.encode``), the first
    sent at ``sent_at_ms``."""
    if not 2 <= len(encoded) <= MAX_RECORDS:
        raise LocalProtocolError(f"a batch carries 2 to {MAX_RECORDS} messages")
    out = [struct.pack(">QBB", sent_at_ms, FLAG_PREKEY, len(encoded))]
    for rec in encoded:
        if not 0 < len(rec) <= 0xFFFF:
            raise LocalProtocolError("a record in a batch is 1 to 65,535 bytes")
        out.append(struct.pack(">H", len(rec)))
        out.append(rec)
    return b"".join(out)


def is_batch(data: bytes) -> bool:
    """The payload of a version-2 direct message is a batch (no parsing)."""
    return len(data) > 8 and data[8] == FLAG_PREKEY


def batch_size(sizes: list[int]) -> int:
    """Bytes of a batch of records of these encoded sizes (one alone: its own size)."""
    if len(sizes) == 1:
        return sizes[0]
    return 10 + sum(2 + s for s in sizes)


def parse_session_record(kind: Kind, data: bytes) -> Record | HybridAnnouncement | Batch:
    """The record a session envelope of ``kind`` carries: a batch or a single record."""
    if kind == Kind.DIRECT and is_batch(data):
        return Batch.parse(data)
    return parse_record(kind, data, version=2)
