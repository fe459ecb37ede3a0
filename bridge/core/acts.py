"""Acts on earlier messages (corrections, replies, reactions, retractions, read
markers) and presences: the parts of a direct message record with flag 8 or 16
(layouts in ``bridge.core.records``, spec in docs/envelope.md §10).

A message is named by its XMPP message id (``ref``): the id the sending client gave
it, which travels in the direct message record and which the recipient's clients
see as the stanza's id, so both ends' clients already know it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from bridge.core.errors import LocalProtocolError, MalformedError, NonCanonicalError
from bridge.core.reader import Reader

MAX_REF: Final = 64  # bytes of a message id named by an act
MAX_REACTIONS: Final = 16  # distinct reactions in one reaction record
MAX_REACTION: Final = 32  # bytes of one reaction (an emoji sequence)
MAX_STATUS: Final = 64  # bytes of a presence's status text


def short(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > limit:
        raise LocalProtocolError(f"text field longer than {limit} bytes")
    return bytes([len(raw)]) + raw


def short_field(r: Reader, limit: int) -> str:
    n = r.u8()
    if n > limit:
        raise NonCanonicalError(f"text field of {n} bytes exceeds {limit}")
    try:
        return r.take(n).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("text is not valid UTF-8") from exc


class ActKind(enum.IntEnum):
    """What an act does to the message it names (flag 8); the values are the wire codes."""

    CORRECTION = 1  # XEP-0308
    REPLY = 2  # XEP-0461
    REACTION = 3  # XEP-0444
    RETRACTION = 4  # XEP-0424
    DISPLAYED = 5  # XEP-0333


TEXT_ACTS: Final = (ActKind.CORRECTION, ActKind.REPLY)  # carry text, may want a receipt


@dataclass(frozen=True, slots=True)
class Act:
    """An act on the message whose XMPP id is ``ref``. ``reactions``: the whole set
    of the sender's reactions to it (a reaction only); ``to_recipient``: a reply to
    a message the recipient wrote (else one the sender wrote)."""

    kind: ActKind
    ref: str
    reactions: tuple[str, ...] = ()
    to_recipient: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.ref.encode("utf-8")) <= MAX_REF:
            raise LocalProtocolError(f"an act names a message id of 1 to {MAX_REF} bytes")
        if self.kind is not ActKind.REACTION and self.reactions:
            raise LocalProtocolError("only a reaction carries reactions")
        if self.kind is not ActKind.REPLY and self.to_recipient:
            raise LocalProtocolError("only a reply names its message's author")
        if len(self.reactions) > MAX_REACTIONS or len(set(self.reactions)) != len(self.reactions):
            raise LocalProtocolError(f"a reaction carries at most {MAX_REACTIONS} distinct "
                                     "reactions")
        for r in self.reactions:
            if not 1 <= len(r.encode("utf-8")) <= MAX_REACTION:
                raise LocalProtocolError(f"a reaction is 1 to {MAX_REACTION} bytes")

    def encode(self) -> bytes:
        out = bytes([self.kind]) + short(self.ref, MAX_REF)
        if self.kind is ActKind.REPLY:
            out += bytes([int(self.to_recipient)])
        elif self.kind is ActKind.REACTION:
            out += bytes([len(self.reactions)])
            out += b"".join(short(r, MAX_REACTION) for r in self.reactions)
        return out

    @classmethod
    def parse(cls, r: Reader) -> Act:
        code = r.u8()
        try:
            kind = ActKind(code)
        except ValueError:
            raise MalformedError(f"unknown act code {code}") from None
        ref = short_field(r, MAX_REF)
        if not ref:
            raise MalformedError("an act names no message")
        if kind is ActKind.REPLY:
            author = r.u8()
            if author > 1:
                raise MalformedError(f"unknown reply author code {author}")
            return cls(kind, ref, to_recipient=bool(author))
        if kind is ActKind.REACTION:
            count = r.u8()
            if count > MAX_REACTIONS:
                raise MalformedError(f"{count} reactions; at most {MAX_REACTIONS}")
            reactions = tuple(short_field(r, MAX_REACTION) for _ in range(count))
            if "" in reactions or len(set(reactions)) != count:
                raise NonCanonicalError("reactions are non-empty and distinct")
            return cls(kind, ref, reactions)
        return cls(kind, ref)


class Show(enum.IntEnum):
    """A contact's availability (RFC 6121 <show/>, and unavailable); wire codes."""

    AVAILABLE = 1
    CHAT = 2
    AWAY = 3
    XA = 4
    DND = 5
    UNAVAILABLE = 6


@dataclass(frozen=True, slots=True)
class Presence:
    show: Show
    status: str = ""

    def __post_init__(self) -> None:
        if len(self.status.encode("utf-8")) > MAX_STATUS:
            raise LocalProtocolError(f"a presence status is at most {MAX_STATUS} bytes")
