"""The service: the one interface both faces use (see bridge.api.ServiceAPI).

It owns the key file, turns outgoing messages into sealed, PoW-stamped
envelopes (the work runs in the worker pool, never on the event loop), watches
the node for envelopes whose tag is one of ours, opens them and tells the faces
what arrived. The faces never touch envelopes, keys or sockets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Protocol

from bridge.core import crypto, tags, vanity
from bridge.core.address import decode_address, encode_address, fingerprint
from bridge.core.checks import DEFAULT_BASE_BITS, MAX_TTL, work_needed
from bridge.core.envelope import Envelope, Kind, envelope_id, with_nonce
from bridge.core.errors import (
    LocalProtocolError,
    OversizeError,
    PowCancelledError,
    RemoteProtocolError,
    UserError,
)
from bridge.core.identity import PREKEY_LIFETIME, Identity, SignedPrekey, make_prekey
from bridge.core.invite import Invite, encode_invite, parse_invite
from bridge.core.peers import parse_peer
from bridge.core.records import (
    Announcement,
    ChatState,
    DirectMessage,
    Receipt,
    RoomMessage,
    parse_record,
)
from bridge.core.seal import MAX_PAYLOAD, Opened, open_envelope, seal
from bridge.events import (
    ChatStateArrived,
    ContactInfo,
    ContactsChanged,
    ContactState,
    Event,
    IdentitiesChanged,
    IdentityInfo,
    MessageArrived,
    NodeHealth,
    ReceiptArrived,
    RoomMessageArrived,
)
from bridge.net.workers import WorkerPool
from bridge.store import transfer
from bridge.store.keystore import ContactRecord, IdentityRecord, Keystore, PrekeyRecord
from bridge.store.seen import MemorySeen, SeenIds
from bridge.vanityjobs import VanityJob, VanityJobRunner

log = logging.getLogger(__name__)

DEFAULT_TTL = 2 * 24 * 3600
# Chat states (opt-in): a short life keeps their proof of work at the base
# difficulty; at most one per contact per interval, the latest state winning;
# one older than CHAT_STATE_STALE when it arrives (a catch-up) is not shown.
CHAT_STATE_TTL = 5 * 60
CHAT_STATE_INTERVAL = 3.0
CHAT_STATE_STALE = 120
MAINTENANCE_INTERVAL = 3600
ROOMS = ("public",)
RESERVED_USERNAMES = frozenset({"paranoim", "admin", "root"})
_USERNAME_RE = re.compile(r"[^a-z0-9._-]+")


class UnknownIdentityError(UserError):
    pass


class UnknownContactError(UserError):
    pass


class MessageTooLargeError(OversizeError, UserError):
    """The person's text does not fit in one envelope (both families, as BadAddressError)."""


class NetworkUnreachableError(UserError):
    pass


# (endpoint url, stamped envelope) -> None, or a UserError saying why it failed
DirectSender = Callable[[str, bytes], Awaitable[None]]


class NodeLike(Protocol):
    async def publish(self, raw: bytes) -> Envelope: ...
    def subscribe(self, callback: Callable[[Envelope], None]) -> Callable[[], None]: ...
    def iter_stored(self) -> Iterable[Envelope]: ...
    def peers(self) -> list[dict[str, object]]: ...
    def add_peer(self, host_port: str) -> None: ...
    def remove_peer(self, host_port: str) -> None: ...
    def health(self) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class _Watch:
    owner: str  # local identity address ("" for rooms: every identity)
    purpose: str  # "direct" | "room" | "announce"
    subject: str  # contact address for announcements, room name for rooms
    pair: bool = False  # a pair tag: shared with the contact, so our own envelopes use it too


@dataclass(slots=True)
class _ChatStates:
    """Chat states going to one contact: the latest not yet sent, the last sent."""

    pending: ChatState | None = None
    last: ChatState | None = None  # what the contact last learnt from us
    next_at: float = 0.0  # monotonic time the next one may leave
    busy: bool = False  # a flush task is running


def _now() -> int:
    return int(time.time())


@functools.lru_cache(maxsize=256)
def _identity(seed_hex: str) -> Identity:
    return Identity.from_seed(bytes.fromhex(seed_hex))


class Service:
    def __init__(self, keystore: Keystore, node: NodeLike, pool: WorkerPool, *,
                 base_bits: int = DEFAULT_BASE_BITS, ttl: int = DEFAULT_TTL,
                 clock: Callable[[], int] = _now, storage: str = "memory",
                 tor: str = "off", seen: SeenIds | None = None,
                 chat_states: bool = False) -> None:
        self.keystore = keystore
        self.node = node
        self.pool = pool
        self.base_bits = base_bits
        self.ttl = min(ttl, MAX_TTL)
        self.clock = clock
        self.storage = storage
        self.tor = tor
        self.chat_states = chat_states  # XEP-0085 states cross the network (opt-in)
        self.chat_state_interval = CHAT_STATE_INTERVAL
        self._chat_out: dict[tuple[str, str], _ChatStates] = {}
        self._heard_ms: dict[tuple[str, str], int] = {}  # newest sent_at_ms shown per sender
        self.endpoint = ""  # direct-delivery endpoint to announce, set by the daemon
        self.direct: DirectSender | None = None  # kkv-style delivery, set by the daemon
        self.direct_stats = {"direct": 0, "fallback": 0}
        self.bootstrap_peers: list[str] = []  # put into invitation links
        self._added_peers: list[str] = []  # added here; listed as "connecting" until linked
        self._xmpp: dict[str, object] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._watch: dict[bytes, list[_Watch]] = {}
        self._seen: SeenIds = seen if seen is not None else MemorySeen()  # shown to the user
        self._opened: set[bytes] = set()  # opened in this run (held ones included)
        self._unconfirmed: dict[bytes, int] = {}  # emitted, not yet confirmed by a face
        self._held: dict[tuple[str, str], list[MessageArrived]] = {}
        self._last_sent_ms = 0  # sent_at_ms of the last direct message, kept increasing
        self._errors: list[str] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._announced_epoch = 0
        self.vanity = VanityJobRunner(self)

    # --- lifecycle ------------------------------------------------------------

    async def start(self, *, deliver: bool = True) -> None:
        """Load keys and begin upkeep. With ``deliver=False`` arrivals wait in the
        node until ``start_delivery()``: a daemon calls that once its faces have
        subscribed, so nothing is handed to nobody."""
        self.keystore.load()
        for rec in self.keystore.doc.identities:
            self._rotate_prekeys(rec)
        self.keystore.save() if self.keystore.doc.identities else None
        self._rebuild_watch()
        if deliver:
            self.start_delivery()
        for rec in self.keystore.doc.identities:
            self._spawn(self._announce(rec))
        self._announced_epoch = tags.epoch_of(self.clock())
        self._spawn(self._maintenance_loop())

    def start_delivery(self) -> None:
        """Watch the node for our envelopes, beginning with those it already holds."""
        if self._unsubscribe is None:
            self._unsubscribe = self.node.subscribe(self._on_envelope)
            for env in list(self.node.iter_stored()):
                self._on_envelope(env)

    async def _maintenance_loop(self) -> None:
        while True:
            now = self.clock()
            # Wake at the next epoch boundary (tags change then) or hourly.
            await asyncio.sleep(min(MAINTENANCE_INTERVAL, tags.EPOCH - now % tags.EPOCH + 1))
            await self.maintain()

    async def maintain(self) -> None:
        """Periodic upkeep: watch the new epoch's tags, rotate prekeys (deleting
        expired secrets), announce the new prekeys, and announce daily so contacts
        who come online later still find the current prekeys and endpoint."""
        now = self.clock()
        rotated = [rec for rec in self.keystore.doc.identities if self._rotate_prekeys(rec)]
        if rotated:
            self.keystore.save()
        self._rebuild_watch()
        self._seen.purge(now)
        epoch = tags.epoch_of(now)
        again = epoch != self._announced_epoch
        self._announced_epoch = epoch
        for rec in self.keystore.doc.identities:
            if again or rec in rotated:
                self._spawn(self._announce(rec))

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        self.vanity.cancel_all()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._error(f"background task failed: {task.exception()}")

    def _error(self, text: str) -> None:
        log.warning("%s", text)
        self._errors = [*self._errors[-19:], time.strftime("%H:%M:%S ") + text]

    # --- events ---------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken face must not stop the others
                log.exception("event listener failed")

    # --- identities -----------------------------------------------------------

    def _rec(self, address: str) -> IdentityRecord:
        for rec in self.keystore.doc.identities:
            if _identity(rec.seed).address == address:
                return rec
        raise UnknownIdentityError(f"there is no local identity {address}")

    @staticmethod
    def _ident(rec: IdentityRecord) -> Identity:
        return _identity(rec.seed)

    def _info(self, rec: IdentityRecord) -> IdentityInfo:
        ident = self._ident(rec)
        return IdentityInfo(address=ident.address, nick=rec.nick, username=rec.username,
                            xmpp_password=rec.xmpp_password, fingerprint=ident.fingerprint,
                            created_at=rec.created_at)

    def identities(self) -> list[IdentityInfo]:
        return [self._info(r) for r in self.keystore.doc.identities]

    def identity(self, address: str) -> IdentityInfo:
        return self._info(self._rec(address))

    def identity_by_username(self, username: str) -> IdentityInfo | None:
        for rec in self.keystore.doc.identities:
            if rec.username == username.lower():
                return self._info(rec)
        return None

    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        found = self.identity_by_username(username)
        expected = found.xmpp_password if found else secrets.token_urlsafe(18)
        ok = crypto.equal(password.encode("utf-8"), expected.encode("utf-8"))
        return found if ok and found else None

    @staticmethod
    def _check_nick(nick: str) -> str:
        nick = " ".join(nick.split())
        if not nick:
            raise UserError("give the identity a nickname (it is only shown to you)")
        if len(nick) > 64:
            raise UserError("a nickname has at most 64 characters")
        return nick

    def _username_for(self, nick: str) -> str:
        # "Zoë Test" -> "zoe.test": accents folded, not dropped; anything else
        # outside a JID-safe ASCII set removed.
        folded = unicodedata.normalize("NFKD", nick).encode("ascii", "ignore").decode()
        base = _USERNAME_RE.sub("", folded.lower().replace(" ", "."))[:24].strip(".-_") or "me"
        taken = {r.username for r in self.keystore.doc.identities} | RESERVED_USERNAMES
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        return name

    def add_identity_seed(self, seed: bytes, nick: str) -> IdentityInfo:
        nick = self._check_nick(nick)
        address = Identity.from_seed(seed).address
        if any(i.address == address for i in self.identities()):
            raise UserError("this identity is already here")
        rec = IdentityRecord(seed=seed.hex(), nick=nick, username=self._username_for(nick),
                             xmpp_password=secrets.token_urlsafe(18), created_at=self.clock())
        self._rotate_prekeys(rec)
        self.keystore.doc.identities.append(rec)
        self.keystore.save()
        self._rebuild_watch()
        self._emit(IdentitiesChanged())
        self._spawn(self._announce(rec))
        return self._info(rec)

    async def create_identity(self, nick: str, *, vanity_prefix: str = "") -> IdentityInfo:
        nick = self._check_nick(nick)
        if vanity_prefix:
            job = self.start_vanity(vanity_prefix, nick)
            return await job.wait()
        return self.add_identity_seed(secrets.token_bytes(32), nick)

    def rename_identity(self, address: str, nick: str) -> IdentityInfo:
        rec = self._rec(address)
        rec.nick = self._check_nick(nick)
        self.keystore.save()
        self._emit(IdentitiesChanged())
        return self._info(rec)

    def delete_identity(self, address: str) -> None:
        rec = self._rec(address)
        self.keystore.doc.identities.remove(rec)
        self.keystore.save()
        self._rebuild_watch()
        self._emit(IdentitiesChanged())

    async def export_identity(self, address: str, passphrase: str) -> bytes:
        rec = self._rec(address)
        # Argon2id takes about a second and 256 MiB: never on the event loop.
        return await asyncio.to_thread(transfer.export_identity, rec, passphrase)

    async def import_identity(self, data: bytes, passphrase: str) -> IdentityInfo:
        seed, nick = await asyncio.to_thread(transfer.import_identity, data, passphrase)
        return self.add_identity_seed(seed, nick)

    def set_passphrase(self, passphrase: str | None) -> None:
        self.keystore.change_passphrase(passphrase)

    def keys_encrypted(self) -> bool:
        return bool(self.keystore.passphrase)

    # --- vanity ---------------------------------------------------------------

    def vanity_estimate(self, prefix: str) -> tuple[float, float]:
        p = vanity.normalize_prefix(prefix)
        return vanity.expected_attempts(p), vanity.check_feasible(p, self.vanity.keys_per_second)

    def start_vanity(self, prefix: str, nick: str) -> VanityJob:
        self.vanity_estimate(prefix)
        return self.vanity.start(vanity.normalize_prefix(prefix), self._check_nick(nick))

    def vanity_job(self, job_id: str) -> VanityJob | None:
        return self.vanity.get(job_id)

    def vanity_jobs(self) -> list[VanityJob]:
        return list(self.vanity.jobs.values())

    # --- contacts -------------------------------------------------------------

    def _contact_info(self, owner: str, c: ContactRecord) -> ContactInfo:
        return ContactInfo(owner=owner, address=c.address, petname=c.petname,
                           state=ContactState(c.state),
                           fingerprint=fingerprint(decode_address(c.address)))

    def _find_contact(self, rec: IdentityRecord, address: str) -> ContactRecord | None:
        for c in rec.contacts:
            if c.address == address:
                return c
        return None

    def contacts(self, owner: str) -> list[ContactInfo]:
        return [self._contact_info(owner, c) for c in self._rec(owner).contacts]

    def _changed(self, owner: str, c: ContactRecord) -> ContactInfo:
        self.keystore.save()
        self._rebuild_watch()
        info = self._contact_info(owner, c)
        self._emit(ContactsChanged(owner=owner, contact=info))
        return info

    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo:
        rec = self._rec(owner)
        invite = parse_invite(link_or_address)
        if invite.address == owner:
            raise UserError("that is this identity's own address")
        petname = " ".join(petname.split())[:64] or invite.nick or invite.address[:8]
        c = self._find_contact(rec, invite.address)
        if c is None:
            c = ContactRecord(address=invite.address, petname=petname,
                              state=ContactState.ACCEPTED.value, added_at=self.clock())
            rec.contacts.append(c)
        else:
            c.petname = petname if petname else c.petname
            c.state = ContactState.ACCEPTED.value
        for peer in invite.peers:
            self._try_add_peer(peer)
        info = self._changed(owner, c)
        self._release_held(owner, c.address)
        return info

    def accept_contact(self, owner: str, address: str) -> ContactInfo:
        c = self._need_contact(owner, address)
        c.state = ContactState.ACCEPTED.value
        info = self._changed(owner, c)
        self._release_held(owner, address)
        return info

    def block_contact(self, owner: str, address: str) -> ContactInfo:
        rec = self._rec(owner)
        decode_address(address)
        c = self._find_contact(rec, address)
        if c is None:
            c = ContactRecord(address=address, petname=address[:8], state="",
                              added_at=self.clock())
            rec.contacts.append(c)
        c.state = ContactState.BLOCKED.value
        self._held.pop((owner, address), None)
        return self._changed(owner, c)

    def remove_contact(self, owner: str, address: str) -> None:
        rec = self._rec(owner)
        c = self._need_contact(owner, address)
        rec.contacts.remove(c)
        self._held.pop((owner, address), None)
        self.keystore.save()
        self._rebuild_watch()
        self._emit(ContactsChanged(owner=owner, removed=address))

    def _need_contact(self, owner: str, address: str) -> ContactRecord:
        c = self._find_contact(self._rec(owner), address)
        if c is None:
            raise UnknownContactError(f"{address[:12]}… is not a contact of this identity")
        return c

    def invite_link(self, owner: str) -> str:
        rec = self._rec(owner)
        return encode_invite(Invite(public=self._ident(rec).public, nick=rec.nick,
                                    peers=tuple(self.bootstrap_peers)))

    # --- sending --------------------------------------------------------------

    async def _stamp_and_publish(self, raw: bytes, endpoint: str = "") -> bytes:
        now = self.clock()
        digest, bits = work_needed(raw, now=now, base_bits=self.base_bits)
        nonce = await self.pool.solve_pow(digest, bits)
        stamped = with_nonce(raw, nonce)
        if endpoint and self.direct is not None:
            # The contact announced a direct endpoint: try it first (the recipient's
            # node spreads the envelope on by gossip); fall back to gossip here.
            try:
                await self.direct(endpoint, stamped)
            except UserError as exc:
                self.direct_stats["fallback"] += 1
                self._error(f"direct delivery failed, sent by gossip instead: {exc}")
            else:
                self.direct_stats["direct"] += 1
                return envelope_id(stamped)
        env = await self.node.publish(stamped)
        return env.id

    def _sealed(self, ident: Identity, *, recipient: bytes, kex: bytes, kind: Kind,
                tag: bytes, payload: bytes, ttl: int | None = None) -> bytes:
        if len(payload) > MAX_PAYLOAD:
            raise MessageTooLargeError(
                f"the message is {len(payload)} bytes; at most {MAX_PAYLOAD} fit in one envelope")
        return seal(sender_secret_key=ident.secret_key, sender=ident.public, recipient=recipient,
                    kex_public=kex, kind=kind, tag=tag,
                    expiry=self.clock() + min(self.ttl, ttl or self.ttl),
                    payload=payload, ephemeral_secret=secrets.token_bytes(32))

    def _route(self, rec: IdentityRecord, to: str) -> tuple[Identity, bytes, bytes, bytes]:
        """(sender identity, recipient key, X25519 key to seal to, tag) for a contact."""
        ident = self._ident(rec)
        their = decode_address(to)
        c = self._find_contact(rec, to)
        now = self.clock()
        kex = crypto.ed25519_to_x25519_public(their)
        if c and c.prekey:
            pk = SignedPrekey.parse(bytes.fromhex(c.prekey))
            if pk.expires > now + 60:
                kex = pk.public
        epoch = tags.epoch_of(now)
        if c and c.heard_from:
            tag = tags.pair_tag(tags.pair_secret(ident.x25519_secret, ident.public, their), epoch)
        else:
            tag = tags.address_tag(their, epoch)
        return ident, their, kex, tag

    async def send_message(self, owner: str, to: str, text: str, *, receipt: bool = True,
                           message_id: str = "") -> bytes:
        rec = self._rec(owner)
        c = self._find_contact(rec, to)
        if c is not None and c.state == ContactState.BLOCKED.value:
            raise UserError("this contact is blocked; unblock it to write to it")
        ident, their, kex, tag = self._route(rec, to)
        self._message_sent(owner, to)
        msg = DirectMessage(self._sent_at_ms(), text, receipt, message_id[:64],
                            self._current_prekey(rec, ident))
        raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.DIRECT, tag=tag,
                           payload=msg.encode())
        if c is None:  # writing to an address makes it a contact
            c = ContactRecord(address=to, petname=to[:8], state=ContactState.ACCEPTED.value,
                              added_at=self.clock())
            rec.contacts.append(c)
            self._changed(owner, c)
        return await self._stamp_and_publish(raw, c.endpoint)

    def _sent_at_ms(self) -> int:
        """The clock in ms, but always past the previous message's: the recipient orders
        by it what arrives out of order (a catch-up by reconciliation), and the clock
        has whole seconds only."""
        self._last_sent_ms = max(self.clock() * 1000, self._last_sent_ms + 1)
        return self._last_sent_ms

    async def send_receipt(self, owner: str, to: str, envelope_ids: list[bytes],
                           message_ids: list[str]) -> None:
        rec = self._rec(owner)
        ident, their, kex, tag = self._route(rec, to)
        acked = tuple(zip(envelope_ids, [m[:64] for m in message_ids], strict=True))[:64]
        raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.RECEIPT, tag=tag,
                           payload=Receipt(acked).encode())
        c = self._find_contact(rec, to)
        await self._stamp_and_publish(raw, c.endpoint if c else "")

    # --- chat states (XEP-0085, opt-in) -------------------------------------------

    def chat_states_enabled(self) -> bool:
        return self.chat_states

    async def send_chat_state(self, owner: str, to: str, state: str) -> bool:
        try:
            code = ChatState.from_element(state)
        except LocalProtocolError:
            raise UserError(f"{state[:20]!r} is not a chat state; XEP-0085 names active, "
                            "composing, paused, inactive and gone") from None
        if not self.chat_states:
            return False
        c = self._find_contact(self._rec(owner), to)
        if c is None or c.state != ContactState.ACCEPTED.value:
            return False  # typing is only shown to accepted contacts; never a first contact
        out = self._chat_out.setdefault((owner, to), _ChatStates())
        out.pending = code
        if not out.busy:
            out.busy = True
            self._spawn(self._flush_chat_states(owner, to, out))
        return True

    def _message_sent(self, owner: str, to: str) -> None:
        """A message implies "active" (XEP-0085 §5.1): a state still waiting would
        arrive after it and be out of date, and a client's <active/> is no news."""
        if self.chat_states:
            out = self._chat_out.setdefault((owner, to), _ChatStates())
            out.pending, out.last = None, ChatState.ACTIVE

    async def _flush_chat_states(self, owner: str, to: str, out: _ChatStates) -> None:
        """Send the latest pending state, then wait out the interval; repeat while
        states come in. States queued meanwhile collapse to the latest."""
        try:
            while True:
                wait = out.next_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                state, out.pending = out.pending, None
                if state is None:
                    return
                if state == out.last:
                    continue
                out.last = state
                out.next_at = time.monotonic() + self.chat_state_interval
                try:
                    await self._publish_chat_state(owner, to, state)
                except (UserError, RemoteProtocolError) as exc:
                    out.last = None
                    log.info("chat state to %s not sent: %s", to[:8], exc)
        finally:
            out.busy = False

    async def _publish_chat_state(self, owner: str, to: str, state: ChatState) -> None:
        rec = self._rec(owner)
        c = self._find_contact(rec, to)
        if c is None or c.state != ContactState.ACCEPTED.value:
            return  # removed or blocked while it waited
        ident, their, kex, tag = self._route(rec, to)
        msg = DirectMessage.state(self._sent_at_ms(), state)
        raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.DIRECT, tag=tag,
                           payload=msg.encode(), ttl=CHAT_STATE_TTL)
        await self._stamp_and_publish(raw, c.endpoint)

    def _chat_state_arrived(self, me: str, sender: str, c: ContactRecord | None,
                            env: Envelope, record: DirectMessage) -> None:
        """Shown only with chat states on, from an accepted contact, and only if newer
        than anything shown from them (gossip may reorder; a message implies active).
        Never a contact request, never held."""
        if not self.chat_states or c is None or c.state != ContactState.ACCEPTED.value:
            return
        assert record.chat_state is not None
        key = (me, sender)
        if record.sent_at_ms <= self._heard_ms.get(key, -1):
            return
        self._heard_ms[key] = record.sent_at_ms
        if self.clock() * 1000 - record.sent_at_ms > CHAT_STATE_STALE * 1000:
            return  # a catch-up: the person is no longer typing that
        self._show(ChatStateArrived(to=me, sender=sender, state=record.chat_state.element,
                                    sent_at_ms=record.sent_at_ms), env.id, env.expiry)

    async def send_room_message(self, owner: str, room: str, text: str) -> bytes:
        if room not in ROOMS:
            raise UserError(f"there is no room '{room}'; the public room is 'public'")
        rec = self._rec(owner)
        ident = self._ident(rec)
        room_pub = crypto.x25519_public(tags.room_secret(room))
        msg = RoomMessage(self.clock() * 1000, room, rec.nick[:32], text)
        raw = self._sealed(ident, recipient=room_pub, kex=room_pub, kind=Kind.ROOM,
                           tag=tags.room_tag(room_pub, tags.epoch_of(self.clock())),
                           payload=msg.encode())
        return await self._stamp_and_publish(raw)

    # --- prekeys and announcements ----------------------------------------------

    def _rotate_prekeys(self, rec: IdentityRecord) -> bool:
        """Keep a prekey with at least half its life left; delete expired secrets."""
        now = self.clock()
        before = len(rec.prekeys)
        # Keep a secret until nothing sealed to it can still be alive in the network.
        rec.prekeys = [p for p in rec.prekeys if p.expires + MAX_TTL > now]
        if not rec.prekeys or max(p.expires for p in rec.prekeys) < now + PREKEY_LIFETIME // 2:
            rec.prekeys.append(PrekeyRecord(secret=secrets.token_bytes(32).hex(),
                                            expires=now + PREKEY_LIFETIME))
            return True
        return len(rec.prekeys) != before

    def _current_prekey(self, rec: IdentityRecord, ident: Identity) -> SignedPrekey:
        p = max(rec.prekeys, key=lambda p: p.expires)
        return make_prekey(ident, bytes.fromhex(p.secret), p.expires)

    async def _announce(self, rec: IdentityRecord) -> None:
        ident = self._ident(rec)
        now = self.clock()
        live = sorted((p for p in rec.prekeys if p.expires > now), key=lambda p: -p.expires)[:4]
        ann = Announcement(now, tuple(make_prekey(ident, bytes.fromhex(p.secret), p.expires)
                                      for p in live), rec.nick[:32], self.endpoint[:255])
        kex = crypto.x25519_public(tags.announce_secret(ident.public))
        raw = self._sealed(ident, recipient=ident.public, kex=kex, kind=Kind.ANNOUNCEMENT,
                           tag=tags.announce_tag(ident.public, tags.epoch_of(now)),
                           payload=ann.encode())
        try:
            await self._stamp_and_publish(raw)
        except (UserError, RemoteProtocolError) as exc:
            self._error(f"announcement of {rec.nick} not published: {exc}")

    # --- receiving ------------------------------------------------------------

    def _rebuild_watch(self) -> None:
        watch: dict[bytes, list[_Watch]] = {}
        epochs = tags.watch_epochs(self.clock())
        for rec in self.keystore.doc.identities:
            ident = self._ident(rec)
            me = ident.address
            for e in epochs:
                watch.setdefault(tags.address_tag(ident.public, e), []).append(
                    _Watch(me, "direct", ""))
            for c in rec.contacts:
                if c.state == ContactState.BLOCKED.value:
                    continue
                their = decode_address(c.address)
                secret = tags.pair_secret(ident.x25519_secret, ident.public, their)
                for e in epochs:
                    watch.setdefault(tags.pair_tag(secret, e), []).append(
                        _Watch(me, "direct", c.address, pair=True))
                    watch.setdefault(tags.announce_tag(their, e), []).append(
                        _Watch(me, "announce", c.address))
        if self.keystore.doc.identities:
            for room in ROOMS:
                room_pub = crypto.x25519_public(tags.room_secret(room))
                for e in epochs:
                    watch.setdefault(tags.room_tag(room_pub, e), []).append(
                        _Watch("", "room", room))
        self._watch = watch

    def _on_envelope(self, env: Envelope) -> None:
        watches = self._watch.get(env.tag)
        if not watches or env.id in self._opened or env.id in self._seen:
            return
        self._opened.add(env.id)
        failures: list[Exception] = []
        for w in watches:
            try:
                self._open_for(env, w)
            except (RemoteProtocolError, UserError) as exc:
                failures.append(exc)
        # Several local identities may watch one tag, and a pair tag is shared by
        # both ends, so our own envelopes come back under it: only an envelope that
        # none of the watchers could take, under a tag not shared, is worth reporting.
        if failures and len(failures) == len(watches) and not any(w.pair for w in watches):
            self._error(f"envelope {env.id.hex()[:12]} refused: {failures[0]}")

    def _show(self, event: Event, env_id: bytes, expiry: int) -> None:
        """Hand an arrival to the faces. A chat message counts as shown only when a
        face confirms it reached a client (``delivered``): the gateway may hold it
        in RAM for a client that is offline, and a restart before the client logs
        in must not lose it. Other arrivals count as shown at once."""
        if isinstance(event, MessageArrived):
            self._unconfirmed[env_id] = expiry
        else:
            self._seen.add(env_id, expiry)
        self._emit(event)

    def delivered(self, envelope_id: bytes) -> None:
        """A face handed this message to a client: never show it again."""
        expiry = self._unconfirmed.pop(envelope_id, None)
        if expiry is not None:
            self._seen.add(envelope_id, expiry)

    def _open_for(self, env: Envelope, w: _Watch) -> None:
        if w.purpose == "room":
            secret = tags.room_secret(w.subject)
            room_pub = crypto.x25519_public(secret)
            opened = open_envelope(env, room_pub, [secret])
            msg = parse_record(Kind.ROOM, opened.payload)
            assert isinstance(msg, RoomMessage)
            for rec in self.keystore.doc.identities:
                self._show(RoomMessageArrived(
                    to=self._ident(rec).address, room=w.subject,
                    sender=encode_address(opened.sender), sender_nick=msg.nick, text=msg.text,
                    sent_at_ms=msg.sent_at_ms, envelope_id=env.id), env.id, env.expiry)
            return
        rec = self._rec(w.owner)
        ident = self._ident(rec)
        if w.purpose == "announce":
            their = decode_address(w.subject)
            opened = open_envelope(env, their, [tags.announce_secret(their)])
            if opened.sender != their or env.kind != Kind.ANNOUNCEMENT:
                raise UserError("an announcement signed by someone else was ignored")
            ann = parse_record(Kind.ANNOUNCEMENT, opened.payload)
            assert isinstance(ann, Announcement)
            c = self._find_contact(rec, w.subject)
            if c is not None:
                before = (c.prekey, c.endpoint, c.announced_at)
                self._learn_prekeys(c, their, ann.prekeys)
                # Envelopes arrive in any order: an older announcement must not
                # take back a newer endpoint.
                if ann.issued_at >= c.announced_at:
                    c.announced_at = ann.issued_at
                    c.endpoint = ann.endpoint
                if (c.prekey, c.endpoint, c.announced_at) != before:
                    self.keystore.save()  # an fsync: only when something changed
            return
        secrets_ = [bytes.fromhex(p.secret) for p in
                    sorted(rec.prekeys, key=lambda p: -p.expires)] + [ident.x25519_secret]
        opened = open_envelope(env, ident.public, secrets_)
        self._dispatch(rec, env, opened)

    def _learn_prekeys(self, c: ContactRecord, their: bytes,
                       prekeys: Iterable[SignedPrekey]) -> None:
        now = self.clock()
        best = SignedPrekey.parse(bytes.fromhex(c.prekey)) if c.prekey else None
        for pk in prekeys:
            try:
                pk.verify(their, now)
            except RemoteProtocolError:
                continue
            if best is None or pk.expires > best.expires:
                best = pk
        if best is not None:
            c.prekey = best.encode().hex()

    def _dispatch(self, rec: IdentityRecord, env: Envelope, opened: Opened) -> None:
        me = self._ident(rec).address
        sender = encode_address(opened.sender)
        if env.kind not in (Kind.DIRECT, Kind.RECEIPT):
            raise UserError(f"unexpected {env.kind.name.lower()} envelope for {rec.nick}")
        record = parse_record(env.kind, opened.payload)
        c = self._find_contact(rec, sender)
        if c is not None and c.state == ContactState.BLOCKED.value:
            return
        if isinstance(record, Receipt):
            if c is not None:
                self._show(ReceiptArrived(to=me, sender=sender,
                                          acked=tuple(i for i, _ in record.acked),
                                          message_ids=tuple(m for _, m in record.acked)),
                           env.id, env.expiry)
            return
        assert isinstance(record, DirectMessage)
        if record.chat_state is not None:
            self._chat_state_arrived(me, sender, c, env, record)
            return
        key = (me, sender)
        self._heard_ms[key] = max(self._heard_ms.get(key, -1), record.sent_at_ms)
        event = MessageArrived(to=me, sender=sender, text=record.text, expiry=env.expiry,
                               sent_at_ms=record.sent_at_ms, envelope_id=env.id,
                               receipt_wanted=record.receipt_wanted,
                               message_id=record.message_id)
        if c is None:  # first contact: a request, held until the user accepts
            c = ContactRecord(address=sender, petname=sender[:8],
                              state=ContactState.PENDING_IN.value, heard_from=True,
                              added_at=self.clock())
            rec.contacts.append(c)
            if record.prekey:
                self._learn_prekeys(c, opened.sender, [record.prekey])
            self._held.setdefault((me, sender), []).append(event)
            self._changed(me, c)
            return
        changed = not c.heard_from
        c.heard_from = True
        if record.prekey:
            old = c.prekey
            self._learn_prekeys(c, opened.sender, [record.prekey])
            changed = changed or old != c.prekey
        if changed:
            self.keystore.save()
            self._rebuild_watch()
        if c.state == ContactState.PENDING_IN.value:
            self._held.setdefault((me, sender), []).append(event)
            return
        self._show(event, env.id, env.expiry)

    def _release_held(self, owner: str, address: str) -> None:
        for event in self._held.pop((owner, address), []):
            self._show(event, event.envelope_id, event.expiry)

    def held_messages(self, owner: str, address: str) -> int:
        return len(self._held.get((owner, address), []))

    # --- node -----------------------------------------------------------------

    def health(self) -> NodeHealth:
        h = self.node.health()
        stored = h.get("stored_envelopes", 0)
        size = h.get("stored_bytes", 0)
        return NodeHealth(peers=self._peer_list(),
                          stored_envelopes=int(stored) if isinstance(stored, int) else 0,
                          stored_bytes=int(size) if isinstance(size, int) else 0,
                          difficulty_bits=self.base_bits, storage=self.storage, tor=self.tor,
                          recent_errors=[*self._errors, *[str(e) for e in
                                                          h.get("recent_errors", [])  # type: ignore[attr-defined]
                                                          ]][-20:])

    def _peer_list(self) -> list[dict[str, object]]:
        """The node's links, then the peers added here that are not linked yet."""
        linked = self.node.peers()
        addresses = {p.get("address") for p in linked}
        waiting: list[dict[str, object]] = [
            {"address": a, "state": "connecting", "direction": "out"}
                   for a in self._added_peers if a not in addresses]
        return [*linked, *waiting]

    def _try_add_peer(self, peer: str) -> None:
        try:
            self.add_peer(peer)
        except UserError as exc:
            self._error(f"peer {peer} from an invitation not added: {exc}")

    def add_peer(self, host_port: str) -> None:
        peer = parse_peer(host_port)
        self.node.add_peer(peer)
        if peer not in self._added_peers:
            self._added_peers.append(peer)

    def remove_peer(self, host_port: str) -> None:
        peer = host_port.strip()
        known = peer in self._added_peers or any(
            p.get("address") == peer for p in self.node.peers())
        if not known:
            raise UserError(f"{peer} is not a peer of this node")
        self.node.remove_peer(peer)
        if peer in self._added_peers:
            self._added_peers.remove(peer)

    def set_xmpp_settings(self, settings: dict[str, object]) -> None:
        self._xmpp = dict(settings)

    def xmpp_settings(self) -> dict[str, object]:
        return dict(self._xmpp)


__all__ = ["NetworkUnreachableError", "PowCancelledError", "Service"]
