"""Value objects that cross the service boundary.

Both faces (the XMPP gateway and the web UI) see identities, contacts and
arrivals only through these frozen records, never through envelopes or keys.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.core.acts import Act

log = logging.getLogger(__name__)


class ContactState(enum.StrEnum):
    ACCEPTED = "accepted"  # both directions allowed
    PENDING_IN = "pending_in"  # they wrote first; held until the user accepts
    BLOCKED = "blocked"  # nothing from them is delivered


@dataclass(frozen=True, slots=True)
class IdentityInfo:
    """A local identity as the faces show it."""

    address: str  # 56-character address, the whole public key
    nick: str  # display name, can be renamed
    username: str  # XMPP localpart, fixed at creation
    xmpp_password: str  # random, shown to the user to type into the client
    fingerprint: str  # short human-comparable fingerprint
    created_at: int  # unix seconds


@dataclass(frozen=True, slots=True)
class ContactInfo:
    owner: str  # address of the local identity this contact belongs to
    address: str
    petname: str
    state: ContactState
    fingerprint: str
    session: str = ""  # how messages to them are protected now, in one sentence
    session_note: str = ""  # the last thing their sessions did that the person should know


@dataclass(frozen=True, slots=True)
class MessageArrived:
    """A direct message for a local identity, opened and verified."""

    to: str  # local identity address
    sender: str  # sender address (proved by signature)
    text: str
    sent_at_ms: int
    envelope_id: bytes
    receipt_wanted: bool
    message_id: str = ""  # the sender's XMPP message id, if any
    expiry: int = 0  # when the envelope leaves the network
    act: Act | None = None  # set: a correction, reply, reaction, retraction or read marker
    url: str = ""  # a file a contact sent: its local GET URL (XEP-0066 OOB), also the text


@dataclass(frozen=True, slots=True)
class RoomMessageArrived:
    to: str  # local identity that is in the room
    room: str
    sender: str
    sender_nick: str
    text: str
    sent_at_ms: int
    envelope_id: bytes


@dataclass(frozen=True, slots=True)
class ReceiptArrived:
    to: str
    sender: str
    acked: tuple[bytes, ...]  # envelope ids the recipient confirms
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatStateArrived:
    """An accepted contact's XEP-0085 chat state (only with chat states turned on).

    Shown at once or never: nothing holds it for a client that is offline."""

    to: str  # local identity address
    sender: str
    state: str  # the XEP-0085 element name: active, composing, paused, inactive, gone
    sent_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class PresenceArrived:
    """An accepted contact's availability (only with presence on at both ends), or
    "unavailable" when the last one they sent lapsed. Never held for later."""

    to: str  # local identity address
    sender: str
    show: str  # "" (available), chat, away, xa, dnd, or unavailable
    status: str = ""
    sent_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class ContactAvatarChanged:
    """An accepted contact's new picture, checked and kept (``ServiceAPI.contact_avatar``
    gives its bytes)."""

    to: str  # local identity address
    sender: str
    sha1: str  # hex: its XEP-0084 item id and XEP-0153 photo hash
    media_type: str  # image/png or image/jpeg
    size: int


@dataclass(frozen=True, slots=True)
class SessionNotice:
    """Something a contact's sessions did that the person should know: they started
    over (lost their state, moved their identity), or messages of theirs can no
    longer be opened; or a file sent to them did not leave whole. Told by the bot;
    the web UI shows the sessions' with the contact."""

    to: str  # local identity address
    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class ContactsChanged:
    owner: str  # identity whose contact list changed (roster push)
    contact: ContactInfo | None = None
    removed: str | None = None  # address removed, if any


@dataclass(frozen=True, slots=True)
class IdentitiesChanged:
    """The list of local identities changed: one added (``identity`` set), renamed
    (``identity`` with its new nick) or deleted (``removed``, its address)."""

    identity: IdentityInfo | None = None
    removed: str = ""


@dataclass(frozen=True, slots=True)
class NodeHealth:
    peers: list[dict[str, object]] = field(default_factory=list)
    stored_envelopes: int = 0
    stored_bytes: int = 0
    difficulty_bits: int = 0
    storage: str = "memory"
    tor: str = "off"
    recent_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A private group as a local identity knows it (docs/groups.md)."""

    group: str  # the group id, 32 hex digits: the room's localpart
    name: str
    creator: str  # address
    members: tuple[str, ...]  # addresses, the creator among them
    version: int
    member: bool  # False once this identity was removed


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """A group's state arrived or was made here: an invitation (``invited_by`` set),
    a membership change, or this identity's removal (``info.member`` False)."""

    owner: str
    info: GroupInfo
    invited_by: str = ""


@dataclass(frozen=True, slots=True)
class GroupMessageArrived:
    """A message of a private group, its author proved by signature and a member."""

    to: str
    group: str
    sender: str  # the author's address
    text: str
    message_id: str
    sent_at_ms: int


Event = (
    MessageArrived
    | GroupChanged
    | GroupMessageArrived
    | RoomMessageArrived
    | ReceiptArrived
    | ChatStateArrived
    | PresenceArrived
    | ContactAvatarChanged
    | ContactsChanged
    | IdentitiesChanged
    | SessionNotice
)

Listener = Callable[[Event], None]


class EventBus:
    """Hands every event to every face that subscribed; one broken face must not
    stop the others."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe

    def emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")


class RecentErrors:
    """The last few things that went wrong, with their time, for the health page."""

    def __init__(self, keep: int = 20, logger: logging.Logger = log) -> None:
        self.keep = keep
        self.log = logger
        self._lines: list[str] = []

    def add(self, text: str) -> None:
        self.log.warning("%s", text)
        self._lines = [*self._lines[-(self.keep - 1):], time.strftime("%H:%M:%S ") + text]

    def lines(self) -> list[str]:
        return list(self._lines)
