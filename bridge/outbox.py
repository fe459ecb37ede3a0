"""The outbox: everything that leaves — messages, receipts, room messages, chat
states and announcements.

Each goes the same way: route (the contact's key, their prekey if it is still
fresh, a pair tag once they have written to us), seal and stamp with proof of
work off the event loop (sealing and small proofs on the worker pool's crypto
thread, larger proofs in its processes), then deliver directly to the contact's
announced endpoint when there is one, or publish to the node for gossip.

A contact whose hybrid prekey we know (they announced it) or with whom we have a
session gets version-2 envelopes (docs/sessions.md, docs/stamps.md): the message
goes in the session (``SessionBook``), stamped with proof of work minted ahead
(``StampPool``, refilled in the background after it is first used), so the person
does not wait for the proof. Everyone else gets version 1, as before.

Messages to one contact are pipelined: the next is sealed and its proof of work
solved while the one before is still being solved or delivered, but they leave
(are published or delivered) strictly in the order they were written. The order
is fixed when ``send_message`` is called: everything before its first ``await``
runs at once, in call order, and takes the message's place in its contact's
queue (``InOrder``) and its ``sent_at_ms``.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bridge.batching import Batches
from bridge.contacts import ContactBook
from bridge.core import crypto, pow, tags
from bridge.core.acts import Act, Presence
from bridge.core.address import decode_address
from bridge.core.batch import batchable
from bridge.core.body import TooLargeError, seal_sealed, sealed_bucket
from bridge.core.chatstate import ChatStateThrottle, Send
from bridge.core.checks import work_needed
from bridge.core.envelope import Envelope, Kind, envelope_id, with_nonce
from bridge.core.errors import OversizeError, RemoteProtocolError, UserError
from bridge.core.filechunks import FileChunk
from bridge.core.groups import GroupRecord
from bridge.core.identity import Identity, SignedPrekey
from bridge.core.records import (
    Announcement,
    ChatState,
    DirectMessage,
    HybridAnnouncement,
    Receipt,
    RoomMessage,
)
from bridge.core.seal import MAX_PAYLOAD, seal
from bridge.core.stamp import Stamp
from bridge.events import RecentErrors
from bridge.identities import IdentityBook
from bridge.inorder import InOrder, Turn
from bridge.minting import Minter
from bridge.net.workers import INLINE_BITS, WorkerPool
from bridge.pacing import pace
from bridge.sessionbook import SessionBook, WaitingForKeysError
from bridge.store.keystore import ContactRecord, IdentityRecord
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

# Chat states (opt-in): a short life keeps their proof of work at the base
# difficulty; at most one per contact per interval, the latest state winning.
CHAT_STATE_TTL = 5 * 60
CHAT_STATE_INTERVAL = 3.0
ROOMS = ("public",)

# (endpoint url, stamped envelope) -> None, or a UserError saying why it failed
DirectSender = Callable[[str, bytes], Awaitable[None]]


class MessageTooLargeError(OversizeError, UserError):
    """The person's text does not fit in one envelope (both families, as BadAddressError)."""


class Publisher(Protocol):
    async def publish(self, raw: bytes) -> Envelope: ...


def _seal_and_stamp(seal_args: dict[str, Any], now: int, base_bits: int) -> tuple[bytes, bytes,
                                                                                  int]:
    """On the crypto thread: the sealed envelope, stamped when its proof is small.
    (envelope, digest, bits still to solve: 0 when stamped here)."""
    raw = seal(**seal_args)
    seal_args.clear()  # the secret key goes with it (see Outbox._sealed)
    digest, bits = work_needed(raw, now=now, base_bits=base_bits)
    if bits <= INLINE_BITS:
        nonce = pow.solve_range(digest, bits, 0, 1 << 20)
        if nonce is not None:
            return with_nonce(raw, nonce), digest, 0
    return raw, digest, bits


class Outbox:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, node: Publisher,
                 pool: WorkerPool, *, clock: Callable[[], int], base_bits: int, ttl: int,
                 errors: RecentErrors, tasks: TaskSet) -> None:
        self.ids = ids
        self.contacts = contacts
        self.node = node
        self.pool = pool
        self.clock = clock
        self.base_bits = base_bits
        self.ttl = ttl
        self.errors = errors
        self.tasks = tasks
        self.endpoint = ""  # this node's direct-delivery endpoint, announced
        self.direct: DirectSender | None = None  # delivery to a contact's endpoint
        self.direct_stats = {"direct": 0, "fallback": 0}
        self.chat_states = ChatStateThrottle[tuple[str, str]](CHAT_STATE_INTERVAL)
        self.in_order = InOrder[tuple[str, str]]()  # (owner, contact): what leaves in order
        self._last_sent_ms = 0
        self.sessions: SessionBook | None = None  # set by the service: version 2 on
        # called after each announcement: it goes to contacts too (bridge.announcing)
        self.announced: Callable[[IdentityRecord], None] | None = None
        self.minter = Minter(pool, clock, base_bits=base_bits, ttl=ttl, tasks=tasks)
        self.stamps = self.minter.stamps
        # chat messages to a contact in a session, several to an envelope when they queue
        self.batches = Batches[tuple[str, str]](self._seal_batch, self._deliver_batch, tasks)

    # --- batches of messages in a session ------------------------------------------------

    async def _seal_batch(self, key: tuple[str, str], payload: bytes) -> bytes:
        assert self.sessions is not None
        try:
            return await self.sessions.seal(*key, Kind.DIRECT, payload, self.stamp_for)
        except TooLargeError as exc:
            raise MessageTooLargeError(
                f"the message is {len(payload)} bytes; at most {exc.limit} fit in one "
                "envelope") from None

    async def _deliver_batch(self, key: tuple[str, str], raw: bytes) -> bytes:
        c = self.contacts.find(self.ids.rec(key[0]), key[1])
        return await self._deliver(raw, c.endpoint if c is not None else "")

    # --- stamps (version 2) ----------------------------------------------------------------

    async def stamp_for(self, bucket: int) -> Stamp:
        return await self.minter.stamp_for(bucket)

    async def stamp_lasting(self, ttl: int, bucket: int) -> Stamp:
        return await self.minter.stamp_lasting(ttl, bucket)

    def _in_session(self, c: ContactRecord | None, *, may_start: bool) -> bool:
        """Version 2 for this contact: sessions are on and we have one with them, or
        (``may_start``: a message, not a receipt) we know their hybrid prekey."""
        return (self.sessions is not None and c is not None
                and bool(c.sessions or (may_start and c.hybrid_prekey)))

    async def _session_send(self, owner: str, to: str, kind: Kind, payload: bytes,
                            endpoint: str, turn: Turn | None,
                            ttl: int | None = None) -> bytes | None:
        """Seal in the contact's session and deliver; None when the session cannot
        start (their hybrid prekey lapsed): the caller sends version 1 instead, in the
        same ``turn`` (it is released here only when this path ends)."""
        assert self.sessions is not None
        try:
            raw = await self.sessions.seal(owner, to, kind, payload, self.stamp_for if ttl is None
                                           else functools.partial(self.stamp_lasting, ttl))
        except WaitingForKeysError:
            return None
        except TooLargeError as exc:
            if turn is not None:
                turn.done()
            raise MessageTooLargeError(
                f"the message is {len(payload)} bytes; at most {exc.limit} fit in one "
                "envelope") from None
        except BaseException:
            if turn is not None:
                turn.done()
            raise
        try:
            if turn is not None:
                await turn.wait()
            return await self._deliver(raw, endpoint)
        finally:
            if turn is not None:
                turn.done()

    async def confirm_session(self, owner: str, to: str) -> None:
        """Answer a contact's new session at once: a text-free message in it (never
        shown), after which their messages need no handshake block. Only if nothing
        of ours went in it since (any message confirms it)."""
        assert self.sessions is not None
        c = self.contacts.accepted(owner, to)
        if c is None or not self.sessions.unanswered(owner, to):
            return
        payload = DirectMessage(self._sent_at_ms(), "").encode()
        turn = self.in_order.turn((owner, to))
        try:
            raw = await self.sessions.seal(owner, to, Kind.DIRECT, payload, self.stamp_for)
            await turn.wait()
            await self._deliver(raw, c.endpoint)
        except (UserError, RemoteProtocolError) as exc:
            log.debug("session confirmation to %s… not sent: %s", to[:8], exc)
        finally:
            turn.done()

    async def new_session(self, owner: str, to: str) -> None:
        """Start a new session with an accepted contact (their daemon lost ours, or the
        person wants a fresh start): a handshake carrying only an "active" chat state,
        which the contact's daemon shows as a reset."""
        assert self.sessions is not None
        c = self.contacts.accepted(owner, to)
        if c is None:
            raise UserError("a new session starts only with an accepted contact")
        payload = DirectMessage.state(self._sent_at_ms(), ChatState.ACTIVE).encode()
        turn = self.in_order.turn((owner, to))
        try:
            raw = await self.sessions.seal(owner, to, Kind.DIRECT, payload, self.stamp_for,
                                           restart=True)
            await turn.wait()
            await self._deliver(raw, c.endpoint)
        finally:
            turn.done()

    # --- the one way out -------------------------------------------------------------

    async def _stamp(self, seal_args: dict[str, Any]) -> bytes:
        """Seal and solve off the event loop; the stamped envelope."""
        raw, digest, bits = await self.pool.run_crypto(
            _seal_and_stamp, seal_args, self.clock(), self.base_bits)
        if bits:
            raw = with_nonce(raw, await self.pool.solve_pow(digest, bits))
        return raw

    async def _stamp_and_publish(self, seal_args: dict[str, Any], endpoint: str = "",
                                 turn: Turn | None = None) -> bytes:
        try:
            stamped = await self._stamp(seal_args)
            if turn is not None:
                await turn.wait()
            return await self._deliver(stamped, endpoint)
        finally:
            if turn is not None:
                turn.done()

    async def _deliver(self, stamped: bytes, endpoint: str) -> bytes:
        if endpoint and self.direct is not None:
            # The contact announced a direct endpoint: try it first (the recipient's
            # node spreads the envelope on by gossip); fall back to gossip here.
            try:
                await self.direct(endpoint, stamped)
            except UserError as exc:
                self.direct_stats["fallback"] += 1
                self.errors.add(f"direct delivery failed, sent by gossip instead: {exc}")
            else:
                self.direct_stats["direct"] += 1
                return envelope_id(stamped)
        return (await self.node.publish(stamped)).id

    def _sealed(self, ident: Identity, *, recipient: bytes, kex: bytes, kind: Kind,
                tag: bytes, payload: bytes, ttl: int | None = None) -> dict[str, Any]:
        """What ``seal`` is given (it runs on the crypto thread); checked here.

        The secret key is in it until the seal has run (``_seal_and_stamp`` empties it
        then), and callers drop their identity before they ``await``: a task cancelled
        while it waits keeps its frames in its exception's traceback for as long as the
        task object lives (Python 3.12 keeps that exception), and a deleted identity's
        keys must not stay in memory that way."""
        if len(payload) > MAX_PAYLOAD:
            raise MessageTooLargeError(
                f"the message is {len(payload)} bytes; at most {MAX_PAYLOAD} fit in one envelope")
        return {"sender_secret_key": ident.secret_key, "sender": ident.public,
                "recipient": recipient, "kex_public": kex, "kind": kind, "tag": tag,
                "expiry": self.clock() + min(self.ttl, ttl or self.ttl),
                "payload": payload, "ephemeral_secret": secrets.token_bytes(32)}

    def _route(self, rec: IdentityRecord, to: str) -> tuple[Identity, bytes, bytes, bytes]:
        """(sender identity, recipient key, X25519 key to seal to, tag) for a contact."""
        ident = self.ids.ident(rec)
        their = decode_address(to)
        c = self.contacts.find(rec, to)
        now = self.clock()
        kex = crypto.ed25519_to_x25519_public(their)
        if c and c.prekey:
            pk = SignedPrekey.parse(bytes.fromhex(c.prekey))
            if pk.expires > now + 60:
                kex = pk.public
        # Tags in the recipient's shard (docs/sharding.md): a node that carries a part of
        # the network receives what is sent to its identities in any envelope version
        epoch = tags.epoch_of(now)
        if c and c.heard_from:
            secret = tags.pair_secret(ident.x25519_secret, ident.public, their)
            tag = tags.pair_tag_to(secret, their, epoch)
        else:
            tag = tags.address_tag_v2(their, epoch)
        return ident, their, kex, tag

    route = _route  # for records sealed elsewhere (bridge.announcing)

    def _sent_at_ms(self) -> int:
        """The clock in ms, but always past the previous message's: the recipient orders
        by it what arrives out of order (a catch-up by reconciliation), and the clock
        has whole seconds only."""
        self._last_sent_ms = max(self.clock() * 1000, self._last_sent_ms + 1)
        return self._last_sent_ms

    # --- what leaves -------------------------------------------------------------------

    async def send_message(self, owner: str, to: str, text: str, *, receipt: bool = True,
                           message_id: str = "", act: Act | None = None,
                           chunk: FileChunk | None = None, ttl: int | None = None,
                           group: GroupRecord | None = None, avatar: bool = False) -> bytes:
        self.ids.rec(owner)
        decode_address(to)  # a bad address is refused before anything is recorded
        self.contacts.writable(owner, to)
        self.chat_states.message_sent((owner, to), time.monotonic())
        sent_at = self._sent_at_ms()
        c = self.contacts.written_to(owner, to)
        # Taken before the first await: the message's place is the order of the calls.
        turn = self.in_order.turn((owner, to))
        if self._in_session(c, may_start=True):
            plain = DirectMessage(sent_at, text, receipt, message_id[:64], act=act, chunk=chunk,
                                  group=group, avatar=avatar)
            if ttl is None and batchable(plain):
                try:
                    return await self.batches.send((owner, to), plain.encode(), sent_at, turn)
                except WaitingForKeysError:
                    turn = self.in_order.turn((owner, to))  # the version-1 way instead
            else:
                sent = await self._session_send(owner, to, Kind.DIRECT, plain.encode(),
                                                c.endpoint, turn, ttl)
                if sent is not None:
                    return sent
        try:
            rec = self.ids.rec(owner)
            ident, their, kex, tag = self._route(rec, to)
            msg = DirectMessage(sent_at, text, receipt, message_id[:64],
                                None if chunk or group else self.ids.current_prekey(rec),
                                act=act, chunk=chunk, group=group, avatar=avatar)
            raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.DIRECT, tag=tag,
                               payload=msg.encode(), ttl=ttl)
            del ident, rec  # see _sealed
        except BaseException:
            turn.done()
            raise
        return await self._stamp_and_publish(raw, c.endpoint, turn)

    async def send_receipt(self, owner: str, to: str, envelope_ids: list[bytes],
                           message_ids: list[str]) -> None:
        rec = self.ids.rec(owner)
        acked = tuple(zip(envelope_ids, [m[:64] for m in message_ids], strict=True))[:64]
        c = self.contacts.find(rec, to)
        endpoint = c.endpoint if c else ""
        if self._in_session(c, may_start=False):
            sent = await self._session_send(owner, to, Kind.RECEIPT, Receipt(acked).encode(),
                                            endpoint, None)
            if sent is not None:
                return
        ident, their, kex, tag = self._route(rec, to)
        raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.RECEIPT, tag=tag,
                           payload=Receipt(acked).encode())
        del ident  # see _sealed
        await self._stamp_and_publish(raw, endpoint)

    async def send_room_message(self, owner: str, room: str, text: str) -> bytes:
        if room not in ROOMS:
            raise UserError(f"there is no room '{room}'; the public room is 'public'")
        rec = self.ids.rec(owner)
        room_pub = crypto.x25519_public(tags.room_secret(room))
        msg = RoomMessage(self.clock() * 1000, room, rec.nick[:32], text)
        raw = self._sealed(self.ids.ident(rec), recipient=room_pub, kex=room_pub,
                           kind=Kind.ROOM,
                           tag=tags.room_tag_v2(room_pub, tags.epoch_of(self.clock())),
                           payload=msg.encode())
        return await self._stamp_and_publish(raw)

    async def announce(self, rec: IdentityRecord) -> None:
        """Publish the identity's live prekeys and this node's endpoint to its contacts."""
        ident = self.ids.ident(rec)
        now = self.clock()
        ann = Announcement(now, self.ids.live_prekeys(rec), rec.nick[:32], self.endpoint[:255])
        kex = crypto.x25519_public(tags.announce_secret(ident.public))
        raw = self._sealed(ident, recipient=ident.public, kex=kex, kind=Kind.ANNOUNCEMENT,
                           tag=tags.announce_tag_v2(ident.public, tags.epoch_of(now)),
                           payload=ann.encode())
        del ident  # see _sealed
        try:
            await self._stamp_and_publish(raw)
            if self.sessions is not None:
                await self._announce_hybrid(rec, now)
        except (UserError, RemoteProtocolError) as exc:
            self.errors.add(f"announcement of {rec.nick} not published: {exc}")
        if self.announced is not None:
            self.announced(rec)

    async def _announce_hybrid(self, rec: IdentityRecord, now: int) -> None:
        """The version-2 announcement: the identity's hybrid prekeys, from which a
        contact starts a session (docs/sessions.md §3.3)."""
        ann = HybridAnnouncement(now, self.ids.live_hybrid_prekeys(rec), rec.nick[:32],
                                 self.endpoint[:255])
        payload = ann.encode()
        stamp = await self.stamp_for(sealed_bucket(len(payload)))
        ident = self.ids.ident(rec)
        secret = tags.announce_secret(ident.public)
        raw = await self.pool.run_crypto(
            seal_sealed, sender=ident, recipient=ident.public,
            kex_public=crypto.x25519_public(secret), kind=Kind.ANNOUNCEMENT,
            tag=tags.announce_tag_v2(ident.public, tags.epoch_of(now)), stamp=stamp,
            payload=payload, ephemeral_secret=secrets.token_bytes(32))
        del ident  # see _sealed
        await self.node.publish(raw)

    def announce_soon(self, rec: IdentityRecord) -> None:
        self.tasks.spawn(self.announce(rec), name=f"announcement of {rec.nick}")

    # --- chat states (XEP-0085, opt-in) ----------------------------------------------------

    def send_chat_state(self, owner: str, to: str, state: ChatState) -> None:
        key = (owner, to)
        if self.chat_states.offer(key, state, time.monotonic()):
            self.tasks.spawn(self._flush_chat_states(key), name="chat states")

    async def _flush_chat_states(self, key: tuple[str, str]) -> None:
        """Send what the throttle says, when it says; states queued meanwhile collapse."""
        async def send(step: Send) -> None:
            try:
                await self._publish_chat_state(*key, step.state)
            except (UserError, RemoteProtocolError) as exc:
                self.chat_states.failed(key)
                log.debug("chat state to %s not sent: %s", key[1][:8], exc)

        try:
            await pace(lambda now: self.chat_states.step(key, now), send)
        finally:
            self.chat_states.stopped(key)

    async def _publish_chat_state(self, owner: str, to: str, state: ChatState) -> None:
        rec = self.ids.rec(owner)
        c = self.contacts.accepted(owner, to)
        if c is None:
            return  # removed or blocked while it waited
        ident, their, kex, tag = self._route(rec, to)
        msg = DirectMessage.state(self._sent_at_ms(), state)
        raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.DIRECT, tag=tag,
                           payload=msg.encode(), ttl=CHAT_STATE_TTL)
        del ident, rec  # see _sealed
        await self._stamp_and_publish(raw, c.endpoint, self.in_order.turn((owner, to)))

    async def send_presence(self, owner: str, to: str, presence: Presence, ttl: int) -> None:
        """A presence to an accepted contact: short-lived, version 1 as chat states."""
        rec = self.ids.rec(owner)
        c = self.contacts.accepted(owner, to)
        if c is None:
            return
        ident, their, kex, tag = self._route(rec, to)
        msg = DirectMessage.presence_of(self._sent_at_ms(), presence)
        raw = self._sealed(ident, recipient=their, kex=kex, kind=Kind.DIRECT, tag=tag,
                           payload=msg.encode(), ttl=ttl)
        del ident, rec  # see _sealed
        await self._stamp_and_publish(raw, c.endpoint, self.in_order.turn((owner, to)))
