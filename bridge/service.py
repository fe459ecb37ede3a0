"""The service: the one interface both faces use (``bridge.api.ServiceAPI``).

A facade over rooms with one job each: the identity book (keys, passphrase,
prekeys), the contact book (contacts, invitations, requests), the outbox (seal,
stamp, deliver), the inbox (watch, open, dispatch, hold), the peer book, the
vanity searches, and the event bus the faces subscribe to. The faces never touch
envelopes, keys or sockets.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from bridge.actsend import ActSender
from bridge.announcing import ContactAnnouncer
from bridge.avatarbook import AvatarBook
from bridge.contacts import ContactBook, UnknownContactError
from bridge.core import vanity
from bridge.core.acts import Act, ActKind, Presence, Show
from bridge.core.archive import Page, Query
from bridge.core.checks import DEFAULT_BASE_BITS, MAX_TTL
from bridge.core.errors import LocalProtocolError, PowCancelledError, UserError
from bridge.core.records import ChatState
from bridge.events import (
    ContactInfo,
    Event,
    EventBus,
    GroupInfo,
    IdentityInfo,
    NodeHealth,
    PresenceArrived,
    RecentErrors,
    SessionNotice,
)
from bridge.fileacks import ACK_GRACE, FileAcks
from bridge.filerecv import FileAssembler
from bridge.files import FileStore
from bridge.filesend import CHUNK_TTL, FileSender
from bridge.groups import GroupBook
from bridge.history import History, archived_act
from bridge.identities import IdentityBook, UnknownIdentityError, check_nick
from bridge.inbox import Inbox
from bridge.knownids import KnownIds
from bridge.net.workers import WorkerPool
from bridge.outbox import CHAT_STATE_TTL, MessageTooLargeError, Outbox
from bridge.peerbook import NodeLike, PeerBook
from bridge.sessionbook import SessionBook
from bridge.store.archive import ArchiveFile
from bridge.store.keystore import Keystore
from bridge.store.seen import KeyfileSeen
from bridge.tasks import TaskSet
from bridge.upkeep import Upkeep
from bridge.vanityjobs import VanityJob, VanityJobRunner

DEFAULT_TTL = 2 * 24 * 3600
# What was shown reaches the key file within this many seconds (one write for a stream
# of arrivals); a crash in that window may show those messages again after a restart.
SEEN_SAVE = 0.5


def _now() -> int:
    return int(time.time())


class Service:
    def __init__(self, keystore: Keystore, node: NodeLike, pool: WorkerPool, *,
                 base_bits: int = DEFAULT_BASE_BITS, ttl: int = DEFAULT_TTL,
                 clock: Callable[[], int] = _now, storage: str = "memory",
                 tor: str = "off", chat_states: bool = False, sessions: bool = True,
                 archive_file: ArchiveFile | None = None, markers: bool = False,
                 presence: bool = False, files: FileStore | None = None,
                 share_avatar: bool = True) -> None:
        self.keystore, self.node, self.pool, self.clock = keystore, node, pool, clock
        self.base_bits, self.storage, self.tor = base_bits, storage, tor
        self.chat_states = chat_states  # XEP-0085 states cross the network (opt-in)
        self.bus = EventBus()
        self.errors = RecentErrors(logger=logging.getLogger(__name__))
        self.tasks = TaskSet("service", on_error=self.errors.add)
        self.ids = IdentityBook(keystore, self.bus, clock, self.tasks, self._rewatch)
        self.book = ContactBook(self.ids, self.bus, clock, self._watch_contact)
        self.outbox = Outbox(self.ids, self.book, node, pool, clock=clock, base_bits=base_bits,
                             ttl=min(ttl, MAX_TTL), errors=self.errors, tasks=self.tasks)
        self.sessions = SessionBook(self.ids, self.book, clock)
        self.outbox.sessions = self.sessions if sessions else None
        self.seen = KeyfileSeen(keystore, self.tasks.spawn, SEEN_SAVE)
        self.inbox = Inbox(self.ids, self.book, self.bus, clock=clock, errors=self.errors,
                           seen=self.seen,
                           chat_states=chat_states, sessions=self.sessions,
                           spawn=self.tasks.spawn, markers=markers, presence=presence)
        self.acts = ActSender(self.ids, self.book, self.outbox, self.tasks, markers=markers,
                              presence=presence)
        self.bus.subscribe(self.acts.on_event)
        self.files = files if files is not None else FileStore(None, None)  # no uploads
        self.file_sender = FileSender(self.book, self.outbox, self.files, self.tasks,
                                      self.errors.add, tell=lambda owner, to, text:
                                      self.bus.emit(SessionNotice(owner, to, text)))
        self.file_collector = self.inbox.files = FileAssembler(self.files, self.errors.add)
        self.file_acks = FileAcks(self.files, self.tasks, self.file_sender.tell,
                                  self.outbox.send_receipt, wait=CHUNK_TTL + ACK_GRACE)
        self.file_sender.on_sent = self.file_acks.sent
        self.bus.subscribe(self.file_acks.on_event)
        self.avatars = AvatarBook(self.book, self.outbox, self.files, self.tasks, self.bus.emit,
                                  self.errors.add, share=share_avatar,
                                  send_receipt=self.outbox.send_receipt)
        self.inbox.on_avatar = self.avatars.on_chunk
        self.bus.subscribe(self.avatars.on_event)
        self.book.on_release = self.inbox.show_released
        self.announcer = ContactAnnouncer(self.ids, self.book, self.outbox, self.sessions,
                                          self.tasks, self.errors.add)
        self.outbox.announced, self.inbox.on_announcement = (self.announcer.changed,
                                                             self.announcer.take)
        self.bus.subscribe(self.announcer.on_event)
        self.group_book = self.inbox.groups = GroupBook(
            self.ids, self.book, self.outbox, self.tasks, self.bus.emit, clock, self.errors.add)
        if sessions:
            self.inbox.notes.restart = self.new_session
            self.inbox.notes.confirm_soon = self._confirm_session
        self.history = History(self.bus.subscribe, lambda: self.clock() * 1000,
                               file=archive_file)
        self.known = KnownIds(self.history.archive.entries)
        self.bus.subscribe(self.known.on_event)
        self.peerbook = PeerBook(node, self.errors)
        self.upkeep = Upkeep(self.ids, self.inbox, self.outbox, node, self.tasks, clock,
                             loaded=lambda: self.history.load(
                                 [self.ids.ident(r).address for r in self.ids.records()]))
        self.vanity = VanityJobRunner(self)
        self._xmpp: dict[str, object] = {}

    def _rewatch(self) -> None:
        self.inbox.rewatch()

    def _watch_contact(self, owner: str, address: str) -> None:
        announced = self.inbox.watch_contact(owner, address)
        if announced and self.upkeep.delivering:
            # Their announcement may be in the node already (it came before they were
            # a contact): open it now, not at their next one, a day later.
            self.inbox.subscribe_to(self.node.stored_with_tags(announced))

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, *, deliver: bool = True) -> None:
        """Load keys and begin upkeep. With ``deliver=False`` arrivals wait in the
        node until ``start_delivery()``: a daemon calls that once its faces have
        subscribed, so nothing is handed to nobody."""
        self.file_collector.load()  # files in transit when the daemon stopped (sqlite)
        await self.upkeep.start(deliver=deliver)
        self.avatars.load()  # contacts' pictures (sqlite), once the keys are read
        self.file_sender.resume()
        self.file_acks.resume()

    def start_delivery(self) -> None:
        self.upkeep.start_delivery()

    async def maintain(self) -> None:
        await self.upkeep.maintain()

    async def stop(self) -> None:
        self.upkeep.stop_delivery()
        self.vanity.cancel_all()
        await self.tasks.cancel_all()
        await self.ids.flush()
        await self.seen.flush()

    # --- events, health, peers, settings ---------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(listener)

    def health(self) -> NodeHealth:
        return self.peerbook.health(difficulty_bits=self.base_bits, storage=self.storage,
                                    tor=self.tor)

    def add_peer(self, host_port: str) -> None:
        self.peerbook.add(host_port)

    def remove_peer(self, host_port: str) -> None:
        self.peerbook.remove(host_port)

    def set_xmpp_settings(self, settings: dict[str, object]) -> None:
        self._xmpp = dict(settings)

    def xmpp_settings(self) -> dict[str, object]:
        return dict(self._xmpp)

    # --- identities ---------------------------------------------------------------------

    def identities(self) -> list[IdentityInfo]:
        return self.ids.identities()

    def identity(self, address: str) -> IdentityInfo:
        return self.ids.identity(address)

    def identity_by_username(self, username: str) -> IdentityInfo | None:
        return self.ids.identity_by_username(username)

    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        return self.ids.check_login(username, password)

    def add_identity_seed(self, seed: bytes, nick: str) -> IdentityInfo:
        rec = self.ids.add_seed(seed, nick)
        self.outbox.announce_soon(rec)
        return self.ids.info(rec)

    async def create_identity(self, nick: str, *, vanity_prefix: str = "") -> IdentityInfo:
        nick = check_nick(nick)
        if vanity_prefix:
            return await self.start_vanity(vanity_prefix, nick).wait()
        return self.add_identity_seed(secrets.token_bytes(32), nick)

    def rename_identity(self, address: str, nick: str) -> IdentityInfo:
        return self.ids.rename(address, nick)

    def delete_identity(self, address: str) -> None:
        self.ids.delete(address)
        self.inbox.forget_identity(address)
        self.sessions.forget_identity(address)
        self.avatars.forget_identity(address)
        self.file_acks.forget(address)

    async def export_identity(self, address: str, passphrase: str) -> bytes:
        return await self.ids.export(address, passphrase)

    async def import_identity(self, data: bytes, passphrase: str) -> IdentityInfo:
        return self.add_identity_seed(*await self.ids.read_import(data, passphrase))

    def set_passphrase(self, passphrase: str | None) -> None:
        self.ids.set_passphrase(passphrase)

    def keys_encrypted(self) -> bool:
        return self.ids.keys_encrypted()

    def client_storage(self, owner: str) -> dict[str, str]:
        return self.ids.client_storage(owner)

    def set_client_storage(self, owner: str, items: dict[str, str]) -> None:
        self.ids.set_client_storage(owner, items)

    def pep_nodes(self, owner: str) -> dict[str, str]:
        return self.ids.pep_nodes(owner)

    def set_pep_node(self, owner: str, node: str, value: str | None) -> None:
        self.ids.set_pep_node(owner, node, value)

    # --- vanity ------------------------------------------------------------------------

    def vanity_estimate(self, prefix: str) -> tuple[float, float]:
        p = vanity.normalize_prefix(prefix)
        return vanity.expected_attempts(p), vanity.check_feasible(p, self.vanity.keys_per_second)

    def start_vanity(self, prefix: str, nick: str) -> VanityJob:
        self.vanity_estimate(prefix)
        return self.vanity.start(vanity.normalize_prefix(prefix), check_nick(nick))

    def vanity_job(self, job_id: str) -> VanityJob | None:
        return self.vanity.get(job_id)

    def vanity_jobs(self) -> list[VanityJob]:
        return list(self.vanity.jobs.values())

    # --- contacts ------------------------------------------------------------------------

    def contacts(self, owner: str) -> list[ContactInfo]:
        return self.book.contacts(owner)

    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo:
        info, invite = self.book.add(owner, link_or_address, petname)
        self.sessions.promote(owner, info.address)
        self.peerbook.add_from_invite(invite.peers)
        self.inbox.release(owner, info.address)
        self.avatars.send_to(owner, info.address)
        return info

    def accept_contact(self, owner: str, address: str) -> ContactInfo:
        info = self.book.accept(owner, address)
        self.sessions.promote(owner, address)
        self.inbox.release(owner, address)
        self.avatars.send_to(owner, address)
        return info

    def block_contact(self, owner: str, address: str) -> ContactInfo:
        self.inbox.drop_held(owner, address)
        self.sessions.forget(owner, address)
        self.inbox.notes.forget(owner, address)
        self.avatars.forget(owner, address)
        self.file_acks.forget(owner, address)
        return self.book.block(owner, address)

    def remove_contact(self, owner: str, address: str) -> None:
        self.book.remove(owner, address)
        self.inbox.drop_held(owner, address)
        self.sessions.forget(owner, address)
        self.inbox.notes.forget(owner, address)
        self.avatars.forget(owner, address)
        self.file_acks.forget(owner, address)

    def _confirm_session(self, owner: str, address: str) -> None:
        self.tasks.spawn(self.outbox.confirm_session(owner, address),
                         name="session confirmation")

    def new_session(self, owner: str, address: str) -> None:
        """Start a new end-to-end session with an accepted contact, in the background;
        UserError at once if it cannot start (sessions off, not accepted, their keys
        unknown). The contact's daemon tells them of the reset."""
        if self.outbox.sessions is None:
            raise UserError("sessions are off in this daemon ([p2p] sessions, --no-sessions)")
        if self.book.accepted(owner, address) is None:
            raise UserError("a new session starts only with an accepted contact")
        self.sessions.check_can_start(owner, address)
        self.tasks.spawn(self.outbox.new_session(owner, address), name="new session")

    def invite_link(self, owner: str) -> str:
        return self.book.invite_link(owner, self.peerbook.bootstrap)

    def held_messages(self, owner: str, address: str) -> int:
        return self.inbox.held_messages(owner, address)

    # --- messages ------------------------------------------------------------------------

    async def send_message(self, owner: str, to: str, text: str, *, receipt: bool = True,
                           message_id: str = "", reply_to: str = "",
                           reply_to_own: bool = False) -> bytes:
        act = None  # a reply to a message this conversation does not hold goes as a message
        if reply_to and self.known.knows(owner, to, reply_to):
            act = Act(ActKind.REPLY, reply_to, to_recipient=not reply_to_own)
        envelope_id = await self.outbox.send_message(owner, to, text, receipt=receipt,
                                                     message_id=message_id, act=act)
        self.known.add(owner, to, message_id[:64])
        self.history.sent(owner, to, text, message_id, envelope_id,
                          archived_act(act, mine=reply_to_own))
        return envelope_id

    def markers_enabled(self) -> bool:
        return self.acts.markers

    def presence_enabled(self) -> bool:
        return self.acts.presence

    def send_act(self, owner: str, to: str, act: Act, text: str = "",
                 message_id: str = "", receipt: bool = False) -> bool:
        if not self.known.knows(owner, to, act.ref):
            raise UserError(f"no message with id {act.ref[:64]!r} in this conversation (it "
                            "may be too old)")
        sent = self.acts.send_act(owner, to, act, text, message_id, receipt)
        if sent and act.kind is ActKind.CORRECTION:
            self.known.add(owner, to, message_id[:64])
        archived = archived_act(act, mine=False)
        if sent and archived:  # a correction or retraction is archived as its own stanza
            self.history.sent(owner, to, text, message_id[:64], act=archived)
        return sent

    def set_presence(self, owner: str, show: str, status: str = "") -> None:
        name = show or "available"
        if name not in {s.name.lower() for s in Show}:
            raise UserError(f"{show[:20]!r} is not a presence; RFC 6121 names chat, away, "
                            "xa and dnd")
        self.ids.rec(owner)
        raw = status.encode()[:64].decode("utf-8", "ignore")
        self.acts.set_presence(owner, Presence(Show[name.upper()], raw))

    def contact_presence(self, owner: str, address: str) -> PresenceArrived | None:
        if not self.acts.presence:
            return None
        return self.inbox.presences.current(owner, address)

    def share_avatar(self, owner: str, data: bytes | None, *, send: bool = True) -> None:
        self.ids.rec(owner)
        self.avatars.share(owner, data, send=send)

    def contact_avatar(self, owner: str, address: str) -> tuple[str, bytes] | None:
        return self.avatars.current(owner, address)

    async def send_receipt(self, owner: str, to: str, envelope_ids: list[bytes],
                           message_ids: list[str]) -> None:
        await self.outbox.send_receipt(owner, to, envelope_ids, message_ids)

    async def send_room_message(self, owner: str, room: str, text: str) -> bytes:
        return await self.outbox.send_room_message(owner, room, text)

    def delivered(self, envelope_id: bytes) -> None:
        self.inbox.delivered(envelope_id)

    # --- private groups (bridge.groups, docs/groups.md) ----------------------------------

    def groups(self, owner: str) -> list[GroupInfo]:
        return self.group_book.groups(owner)

    def create_group(self, owner: str, name: str) -> GroupInfo:
        return self.group_book.create(owner, name)

    def invite_to_group(self, owner: str, group: str, address: str) -> GroupInfo:
        return self.group_book.invite(owner, group, address)

    def remove_from_group(self, owner: str, group: str, address: str) -> GroupInfo:
        return self.group_book.remove(owner, group, address)

    async def send_group_message(self, owner: str, group: str, text: str,
                                 message_id: str = "") -> None:
        await self.group_book.send(owner, group, text, message_id)

    # --- files (XEP-0363 uploads; bridge.files, bridge.filesend) -----------------------

    def upload_limit(self) -> int:
        return self.files.max_upload if self.files.base_url else 0

    def upload_slot(self, owner: str, name: str, size: int,
                    media_type: str = "") -> tuple[str, str]:
        self.ids.rec(owner)
        return self.files.new_slot(owner, name, size, media_type)

    def send_file(self, owner: str, to: str, url: str, message_id: str = "") -> str | None:
        if not self.file_sender.send(owner, to, url, message_id):
            return None
        return self.history.sent(owner, to, url.strip(), message_id)

    def archive_query(self, owner: str, query: Query) -> Page:
        self.ids.rec(owner)  # UnknownIdentityError for an address that is not ours
        return self.history.query(owner, query)

    def chat_states_enabled(self) -> bool:
        return self.chat_states

    async def send_chat_state(self, owner: str, to: str, state: str) -> bool:
        try:
            code = ChatState.from_element(state)
        except LocalProtocolError:
            raise UserError(f"{state[:20]!r} is not a chat state; XEP-0085 names active, "
                            "composing, paused, inactive and gone") from None
        if not self.chat_states or self.book.accepted(owner, to) is None:
            return False  # typing is only shown to accepted contacts; never a first contact
        self.outbox.send_chat_state(owner, to, code)
        return True


__all__ = ["CHAT_STATE_TTL", "MessageTooLargeError", "PowCancelledError", "Service",
           "UnknownContactError", "UnknownIdentityError"]
