"""The one interface both faces use: ``ServiceAPI``.

The XMPP gateway and the web UI are written against this protocol only; the
daemon hands them the real ``bridge.service.Service``. Methods that do network
or CPU-heavy work are coroutines; lookups are plain methods. Every method
raises ``bridge.core.errors.UserError`` subclasses with a message a person can
act on (bad address, unknown identity, too large, PoW cancelled ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

# Acts on earlier messages (XEP-0308/0424/0444/0333), as the XMPP face names them.
from bridge.core.acts import MAX_REACTION as MAX_REACTION
from bridge.core.acts import MAX_REACTIONS as MAX_REACTIONS
from bridge.core.acts import Act as Act
from bridge.core.acts import ActKind as ActKind

# The archive's vocabulary is the API's: the XMPP face pages it (XEP-0313).
from bridge.core.archive import MAX_PAGE as MAX_PAGE
from bridge.core.archive import ArchiveError as ArchiveError
from bridge.core.archive import Entry as Entry
from bridge.core.archive import Page as Page
from bridge.core.archive import Query as Query
from bridge.core.archive import archive_id as archive_id

# What a picture shown for an identity may be (XEP-0084, vCard-temp).
from bridge.core.avatar import MAX_AVATAR as MAX_AVATAR
from bridge.core.avatar import TYPES as TYPES
from bridge.core.batch import MAX_RECORDS as MAX_RECORDS
from bridge.events import (
    ContactInfo,
    Event,
    GroupInfo,
    IdentityInfo,
    NodeHealth,
    PresenceArrived,
)

# A slot refused: too large (``limit`` says the most, in bytes), too many waiting.
from bridge.files import UploadRefusedError as UploadRefusedError

Listener = Callable[[Event], None]


class VanityProgress(Protocol):
    attempts: int
    rate: float  # keys per second, all workers together
    elapsed: float  # seconds
    expected_attempts: float  # mean number of keys to try for this prefix
    done: bool
    cancelled: bool
    error: str  # set when the job failed; empty otherwise
    address: str  # set when done: the new identity's address


class VanityJob(Protocol):
    """A running vanity search; the result becomes a new identity."""

    id: str
    prefix: str
    nick: str

    def progress(self) -> VanityProgress: ...
    def cancel(self) -> None: ...
    async def wait(self) -> IdentityInfo:
        """The new identity; raises PowCancelledError-like UserError if cancelled."""
        ...


class ServiceAPI(Protocol):
    # --- identities ---------------------------------------------------------
    def identities(self) -> list[IdentityInfo]: ...
    def identity(self, address: str) -> IdentityInfo: ...
    def identity_by_username(self, username: str) -> IdentityInfo | None: ...
    async def create_identity(self, nick: str, *, vanity_prefix: str = "") -> IdentityInfo: ...
    def rename_identity(self, address: str, nick: str) -> IdentityInfo: ...
    def delete_identity(self, address: str) -> None: ...
    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        """Constant-time password check for an XMPP login; None if wrong."""
        ...

    async def export_identity(self, address: str, passphrase: str) -> bytes:
        """The identity's keys as a passphrase-encrypted file (Argon2id)."""
        ...

    async def import_identity(self, data: bytes, passphrase: str) -> IdentityInfo: ...

    # --- the key file's passphrase ---------------------------------------------
    def keys_encrypted(self) -> bool:
        """True when the key file is (or will be) written encrypted with a passphrase."""
        ...

    def set_passphrase(self, passphrase: str | None) -> None:
        """Re-encrypt the key file with ``passphrase`` (None: store it unencrypted).
        Blocking: Argon2id takes a second or so; call it off the event loop."""
        ...

    # --- what the identity's clients keep on the server -----------------------------
    def client_storage(self, owner: str) -> dict[str, str]:
        """XEP-0049 private storage: element name -> serialised element."""
        ...

    def set_client_storage(self, owner: str, items: dict[str, str]) -> None:
        """Store (replace) these elements; UserError past the per-identity bound
        (``bridge.identities.MAX_CLIENT_STORAGE`` bytes, ``MAX_CLIENT_ITEMS`` elements).
        Written with the keys, encrypted when they are."""
        ...

    def pep_nodes(self, owner: str) -> dict[str, str]:
        """The identity's PEP nodes (XEP-0163): node name -> its JSON (``xmpp.pep``)."""
        ...

    def set_pep_node(self, owner: str, node: str, value: str | None) -> None:
        """Store (replace) one PEP node, or delete it (None); UserError past the
        per-identity bound (``bridge.identities.MAX_PEP_STORAGE`` bytes,
        ``MAX_PEP_NODES`` nodes). Written with the keys, encrypted when they are."""
        ...

    # --- vanity addresses ---------------------------------------------------
    def vanity_estimate(self, prefix: str) -> tuple[float, float]:
        """(expected attempts, expected seconds on this machine); UserError if invalid."""
        ...

    def start_vanity(self, prefix: str, nick: str) -> VanityJob: ...
    def vanity_job(self, job_id: str) -> VanityJob | None: ...
    def vanity_jobs(self) -> Sequence[VanityJob]:
        """The searches this daemon knows (running and the latest finished), oldest first."""
        ...

    # --- contacts -----------------------------------------------------------
    def contacts(self, owner: str) -> list[ContactInfo]: ...
    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo: ...
    def accept_contact(self, owner: str, address: str) -> ContactInfo: ...
    def block_contact(self, owner: str, address: str) -> ContactInfo: ...
    def remove_contact(self, owner: str, address: str) -> None: ...
    def new_session(self, owner: str, address: str) -> None:
        """Start a new end-to-end session with an accepted contact (in the background)."""
        ...

    def invite_link(self, owner: str) -> str: ...

    # --- messaging ----------------------------------------------------------
    async def send_message(
        self, owner: str, to: str, text: str, *, receipt: bool = True, message_id: str = "",
        reply_to: str = "", reply_to_own: bool = False
    ) -> bytes:
        """Seal, stamp and publish; returns the envelope id. PoW runs off the loop.
        ``reply_to``: the message id this one answers (XEP-0461), a message the contact
        wrote, or (``reply_to_own``) one ``owner`` wrote."""
        ...

    def markers_enabled(self) -> bool:
        """True when XEP-0333 read markers cross the network (``[xmpp] markers``)."""
        ...

    def presence_enabled(self) -> bool:
        """True when availability crosses the network (``[xmpp] presence``)."""
        ...

    def send_act(self, owner: str, to: str, act: Act, text: str = "",
                 message_id: str = "", receipt: bool = False) -> bool:
        """Queue a correction (with its ``text``), reaction, retraction or read marker
        for an accepted contact; rate-limited per contact, a later one of the same
        message replacing what still waits. False when not sent (a read marker with
        markers off). UserError: not an accepted contact, too many waiting, no text."""
        ...

    def set_presence(self, owner: str, show: str, status: str = "") -> None:
        """The identity's availability: "" or available, chat, away, xa, dnd,
        unavailable; sent to accepted contacts with presence on (status cut at 64
        bytes). UserError for another show."""
        ...

    def contact_presence(self, owner: str, address: str) -> PresenceArrived | None:
        """What a contact's availability is now with presence on; None when off, or when
        the contact never sent one (they show as online, as without presence)."""
        ...

    def share_avatar(self, owner: str, data: bytes | None, *, send: bool = True) -> None:
        """The identity's picture is ``data`` (None: none). ``send``: it changed, so it
        goes to every accepted contact (with ``[xmpp] share_avatar`` on), as it goes to
        each contact accepted later. UserError unless a PNG or JPEG of at most
        ``bridge.core.avatar.MAX_AVATAR`` bytes."""
        ...

    def contact_avatar(self, owner: str, address: str) -> tuple[str, bytes] | None:
        """(media type, bytes) of the latest picture an accepted contact sent; None if
        none was kept."""
        ...

    async def send_receipt(self, owner: str, to: str, envelope_ids: list[bytes],
                           message_ids: list[str]) -> None: ...
    async def send_room_message(self, owner: str, room: str, text: str) -> bytes: ...

    # Private groups (docs/groups.md): the creator signs every membership change;
    # messages go through the creator's daemon, in pairwise sessions. UserError for a
    # group that is not there, a non-creator's change, a non-contact, past the bounds.
    def groups(self, owner: str) -> list[GroupInfo]: ...
    def create_group(self, owner: str, name: str) -> GroupInfo: ...
    def invite_to_group(self, owner: str, group: str, address: str) -> GroupInfo:
        """Add an accepted contact; the new state goes to every member at once."""
        ...
    def remove_from_group(self, owner: str, group: str, address: str) -> GroupInfo: ...
    async def send_group_message(self, owner: str, group: str, text: str,
                                 message_id: str = "") -> None: ...

    def archive_query(self, owner: str, query: Query) -> Page:
        """What ``owner`` sent and was shown (chat, and room messages it saw), in
        order, filtered and paged (XEP-0313, XEP-0059). Peers are addresses and room
        names. ArchiveError (a UserError) for an id the archive does not hold."""
        ...

    def chat_states_enabled(self) -> bool:
        """True when XEP-0085 chat states cross the network (``[xmpp] chat_states``)."""
        ...

    async def send_chat_state(self, owner: str, to: str, state: str) -> bool:
        """Queue a chat state (``composing``, ``paused``, ``active``, ``inactive``,
        ``gone``) for an accepted contact; False when it will not be sent (chat states
        off, or not an accepted contact). States to one contact are rate-limited and
        collapse to the latest; each one sent is a short-lived PoW-stamped envelope.
        UserError for a state name XEP-0085 does not define."""
        ...

    def delivered(self, envelope_id: bytes) -> None:
        """A face handed the MessageArrived with this envelope id to a client; until
        then a persistent store shows it again after a restart."""
        ...

    # --- files (XEP-0363) -----------------------------------------------------
    def upload_limit(self) -> int:
        """The largest file a client may upload, in bytes; 0: no upload service."""
        ...

    def upload_slot(self, owner: str, name: str, size: int,
                    media_type: str = "") -> tuple[str, str]:
        """(PUT URL, GET URL) of a single-use slot for a file of ``size`` bytes on the
        local listener. UploadRefusedError (a UserError; ``limit`` set when the file is
        too large), UnknownIdentityError."""
        ...

    def send_file(self, owner: str, to: str, url: str, message_id: str = "") -> str | None:
        """Send the file behind ``url`` (a GET URL of ``owner``'s) to an accepted
        contact, in the background; its archive id, or None when ``url`` names no
        file of ``owner`` (the text is an ordinary message then). UserError: not an
        accepted contact, or over a budget (``bridge.filesend``)."""
        ...

    # --- events and health --------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event; returns the unsubscribe function."""
        ...

    def health(self) -> NodeHealth: ...

    # --- peers --------------------------------------------------------------
    def add_peer(self, host_port: str) -> None: ...
    def remove_peer(self, host_port: str) -> None: ...

    # --- what a client needs to connect ---------------------------------------
    def xmpp_settings(self) -> dict[str, object]:
        """host, port, domain, certificate SHA-256 fingerprint, TLS mode."""
        ...
