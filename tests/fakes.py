"""An in-memory stand-in for ``bridge.api.ServiceAPI`` for the XMPP tests.

It keeps identities and contacts in dicts, records what the gateway asks it
to send, and lets a test push events as the network would. Tests wait on its
asyncio conditions instead of sleeping.

What a face can see follows the real service's rules, checked against it by
tests/integration/test_service_contract.py: arrivals from a blocked contact are
dropped, a first message from a stranger is a contact request held until it is
accepted, writing to an unknown address makes it an accepted contact, and a
message between two identities of this fake arrives as it would over the
network. Addresses and invitation links are parsed by the core, as the service
parses them. It runs no network, no proof of work and no vanity search.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bridge.api import ServiceAPI, VanityJob
from bridge.core import avatar, vanity
from bridge.core.acts import Act, ActKind, Show
from bridge.core.address import decode_address, fingerprint
from bridge.core.archive import Page, Query
from bridge.core.errors import MalformedError, UserError
from bridge.core.identity import Identity
from bridge.core.invite import Invite, encode_invite, parse_invite
from bridge.core.peers import parse_peer
from bridge.core.records import ChatState
from bridge.events import (
    ChatStateArrived,
    ContactAvatarChanged,
    ContactInfo,
    ContactsChanged,
    ContactState,
    Event,
    GroupChanged,
    GroupInfo,
    IdentitiesChanged,
    IdentityInfo,
    MessageArrived,
    NodeHealth,
    PresenceArrived,
    ReceiptArrived,
)
from bridge.files import FileStore
from bridge.history import History, archived_act
from bridge.identities import (
    MAX_CLIENT_ITEMS,
    MAX_CLIENT_STORAGE,
    MAX_PEP_NODES,
    MAX_PEP_STORAGE,
)
from bridge.knownids import KnownIds
from bridge.sessionview import describe
from bridge.store.keystore import ContactRecord

KEYS_PER_SECOND = 50_000.0  # what vanity_estimate pretends this machine manages

# what the real service says of a contact none of whose keys arrived yet
NO_KEYS = describe(ContactRecord("", "", ""))


def _seed(seed: bytes | None) -> bytes:
    return seed.ljust(32, b"\0")[:32] if seed else os.urandom(32)


def make_address(seed: bytes | None = None) -> str:
    """A real address (valid checksum and key), the same for the same seed."""
    return Identity.from_seed(_seed(seed)).address


def check_address(address: str) -> str:
    """``address`` if it is one; the core's BadAddressError (a UserError) if not."""
    decode_address(address)
    return address


@dataclass
class SentMessage:
    owner: str
    to: str
    text: str
    receipt: bool
    message_id: str
    envelope_id: bytes


@dataclass
class FakeService:
    identities_by_name: dict[str, IdentityInfo] = field(default_factory=dict)
    contact_book: dict[str, dict[str, ContactInfo]] = field(default_factory=dict)
    sent: list[SentMessage] = field(default_factory=list)
    room_sent: list[tuple[str, str, str]] = field(default_factory=list)
    receipts_sent: list[tuple[str, str, list[bytes], list[str]]] = field(default_factory=list)
    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    delivered_ids: list[bytes] = field(default_factory=list)
    held: dict[tuple[str, str], list[MessageArrived]] = field(default_factory=dict)
    peer_list: list[dict[str, object]] = field(default_factory=lambda: [
        {"address": "127.0.0.1:1", "state": "active", "direction": "out"}])
    send_error: UserError | None = None  # next send_message raises this
    send_gate: asyncio.Event | None = None  # if set, send_message waits on it (slow PoW)
    sends_waiting: int = 0  # send_message calls waiting on the gate now
    chat_states: bool = False  # [xmpp] chat_states
    chat_states_sent: list[tuple[str, str, str]] = field(default_factory=list)
    markers: bool = False  # [xmpp] markers
    presence: bool = False  # [xmpp] presence
    acts_sent: list[tuple[str, str, Act, str]] = field(default_factory=list)
    presences_set: list[tuple[str, str, str]] = field(default_factory=list)
    contact_presences: dict[tuple[str, str], PresenceArrived] = field(default_factory=dict)
    avatars_shared: list[tuple[str, bytes | None, bool]] = field(default_factory=list)
    contact_avatars: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    passphrase: str | None = None
    seeds: dict[str, bytes] = field(default_factory=dict)  # address -> key seed
    client_store: dict[str, dict[str, str]] = field(default_factory=dict)  # XEP-0049
    pep_store: dict[str, dict[str, str]] = field(default_factory=dict)  # XEP-0163
    files: FileStore = field(default_factory=lambda: FileStore(None, None))  # RAM only
    files_sent: list[tuple[str, str, str, str]] = field(default_factory=list)
    group_book: dict[tuple[str, str], GroupInfo] = field(default_factory=dict)  # (owner, id)
    group_sent: list[tuple[str, str, str, str]] = field(default_factory=list)
    _tick: asyncio.Event = field(default_factory=asyncio.Event)
    history: History = field(init=False)

    def __post_init__(self) -> None:
        self.history = History(self.subscribe, lambda: int(time.time() * 1000))
        self.known = KnownIds(self.history.archive.entries)  # as the service: ids acts name
        self.subscribe(self.known.on_event)

    # --- test helpers -------------------------------------------------------

    def add_user(self, username: str, password: str, nick: str = "") -> IdentityInfo:
        seed = _seed(username.encode())
        address = Identity.from_seed(seed).address
        self.seeds[address] = seed
        info = IdentityInfo(
            address=address,
            nick=nick or username.capitalize(),
            username=username,
            xmpp_password=password,
            fingerprint=fingerprint(decode_address(address)),
            created_at=0,
        )
        self.identities_by_name[username] = info
        self.contact_book.setdefault(info.address, {})
        return info

    def put_contact(self, owner: str, address: str, petname: str,
                    state: ContactState = ContactState.ACCEPTED) -> ContactInfo:
        info = ContactInfo(owner, address, petname, state, fingerprint(decode_address(address)),
                           NO_KEYS)
        self.contact_book.setdefault(owner, {})[address] = info
        return info

    def emit(self, event: Event) -> None:
        """``event`` arrives as from the network: shown, held or dropped as the
        service would (blocked senders dropped, a stranger's message held as a
        contact request, chat states only from accepted contacts when on)."""
        if isinstance(event, MessageArrived | ReceiptArrived | ChatStateArrived):
            c = self.contact_book.get(event.to, {}).get(event.sender)
            if c is not None and c.state is ContactState.BLOCKED:
                return
            if isinstance(event, ReceiptArrived) and c is None:
                return
            if isinstance(event, ChatStateArrived) and (
                    not self.chat_states or c is None or c.state is not ContactState.ACCEPTED):
                return
            if isinstance(event, MessageArrived) and (
                    c is None or c.state is ContactState.PENDING_IN):
                self.held.setdefault((event.to, event.sender), []).append(event)
                if c is None:
                    self._change(event.to, ContactInfo(
                        event.to, event.sender, event.sender[:8], ContactState.PENDING_IN,
                        fingerprint(decode_address(event.sender))))
                return
        self._show(event)

    def _show(self, event: Event) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _poke(self) -> None:
        """Wake every ``wait_for``: something was recorded."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _notify(self) -> None:
        self._poke()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                await self._tick.wait()

        await asyncio.wait_for(wait(), timeout)

    def _local(self, address: str) -> IdentityInfo | None:
        for info in self.identities_by_name.values():
            if info.address == address:
                return info
        return None

    # --- identities ---------------------------------------------------------

    def identities(self) -> list[IdentityInfo]:
        return list(self.identities_by_name.values())

    def identity(self, address: str) -> IdentityInfo:
        info = self._local(address)
        if info is None:
            raise UserError(f"there is no local identity {address}")
        return info

    def identity_by_username(self, username: str) -> IdentityInfo | None:
        return self.identities_by_name.get(username.lower())

    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        info = self.identity_by_username(username)
        expected = info.xmpp_password if info else "\0invalid"
        ok = hmac.compare_digest(expected.encode(), password.encode())
        return info if ok and info else None

    @staticmethod
    def _check_nick(nick: str) -> str:
        nick = " ".join(nick.split())
        if not nick:
            raise UserError("give the identity a nickname (it is only shown to you)")
        if len(nick) > 64:
            raise UserError("a nickname has at most 64 characters")
        return nick

    def _add_seed(self, seed: bytes, nick: str) -> IdentityInfo:
        nick = self._check_nick(nick)
        ident = Identity.from_seed(seed)
        if self._local(ident.address) is not None:
            raise UserError("this identity is already here")
        base = re.sub(r"[^a-z0-9._-]", "", nick.lower().replace(" ", "."))[:24] or "me"
        username, n = base, 2
        while username in self.identities_by_name:
            username, n = f"{base}{n}", n + 1
        info = IdentityInfo(ident.address, nick, username, os.urandom(12).hex(),
                            ident.fingerprint, 0)
        self.identities_by_name[username] = info
        self.seeds[info.address] = seed
        self.contact_book.setdefault(info.address, {})
        self._show(IdentitiesChanged(identity=info))
        return info

    async def create_identity(self, nick: str, *, vanity_prefix: str = "") -> IdentityInfo:
        if vanity_prefix:
            raise UserError("this stand-in runs no vanity search")
        return self._add_seed(os.urandom(32), nick)

    def rename_identity(self, address: str, nick: str) -> IdentityInfo:
        info = replace(self.identity(address), nick=self._check_nick(nick))
        self.identities_by_name[info.username] = info
        self._show(IdentitiesChanged(identity=info))
        return info

    def delete_identity(self, address: str) -> None:
        info = self.identity(address)
        del self.identities_by_name[info.username]
        self.contact_book.pop(address, None)
        self.seeds.pop(address, None)
        self.client_store.pop(address, None)
        self.pep_store.pop(address, None)
        self._show(IdentitiesChanged(removed=address))

    def _seal(self, data: bytes, passphrase: str) -> bytes:
        return hashlib.blake2b(data, key=passphrase.encode()[:64], digest_size=16).digest()

    async def export_identity(self, address: str, passphrase: str) -> bytes:
        # Not encrypted: a stand-in for the Argon2id file, with a passphrase check.
        info = self.identity(address)
        body = json.dumps({"seed": self.seeds[address].hex(), "nick": info.nick}).encode()
        return self._seal(body, passphrase) + body

    async def import_identity(self, data: bytes, passphrase: str) -> IdentityInfo:
        mac, body = data[:16], data[16:]
        if not hmac.compare_digest(mac, self._seal(body, passphrase)):
            raise UserError("wrong passphrase, or not an exported identity")
        doc = json.loads(body)
        return self._add_seed(bytes.fromhex(doc["seed"]), doc["nick"])

    def keys_encrypted(self) -> bool:
        return bool(self.passphrase)

    def client_storage(self, owner: str) -> dict[str, str]:
        self.identity(owner)
        return dict(self.client_store.get(owner, {}))

    def set_client_storage(self, owner: str, items: dict[str, str]) -> None:
        self.identity(owner)
        merged = {**self.client_store.get(owner, {}), **items}
        if (len(merged) > MAX_CLIENT_ITEMS or sum(len(k.encode()) + len(v.encode())
                                                  for k, v in merged.items()) > MAX_CLIENT_STORAGE):
            raise UserError("private storage is full for this identity")
        self.client_store[owner] = merged

    def pep_nodes(self, owner: str) -> dict[str, str]:
        self.identity(owner)
        return dict(self.pep_store.get(owner, {}))

    def set_pep_node(self, owner: str, node: str, value: str | None) -> None:
        self.identity(owner)
        nodes = {k: v for k, v in self.pep_store.get(owner, {}).items() if k != node}
        if value is not None:
            nodes[node] = value
            if len(nodes) > MAX_PEP_NODES or sum(len(k.encode()) + len(v.encode())
                                                 for k, v in nodes.items()) > MAX_PEP_STORAGE:
                raise UserError(f"PEP storage is full for this identity (at most "
                                f"{MAX_PEP_NODES} nodes and {MAX_PEP_STORAGE // 1024} KiB)")
        self.pep_store[owner] = nodes

    def set_passphrase(self, passphrase: str | None) -> None:
        self.passphrase = passphrase or None

    # --- vanity addresses ---------------------------------------------------

    def vanity_estimate(self, prefix: str) -> tuple[float, float]:
        attempts = vanity.expected_attempts(vanity.normalize_prefix(prefix))
        return attempts, vanity.check_feasible(prefix, KEYS_PER_SECOND)

    def start_vanity(self, prefix: str, nick: str) -> VanityJob:
        raise UserError("this stand-in runs no vanity search")

    def vanity_job(self, job_id: str) -> VanityJob | None:
        return None

    def vanity_jobs(self) -> Sequence[VanityJob]:
        return []

    # --- contacts -----------------------------------------------------------

    def contacts(self, owner: str) -> list[ContactInfo]:
        self.identity(owner)
        return list(self.contact_book.get(owner, {}).values())

    def _contact(self, owner: str, address: str) -> ContactInfo | None:
        self.identity(owner)
        return self.contact_book.get(owner, {}).get(address)

    def _change(self, owner: str, info: ContactInfo) -> ContactInfo:
        self.contact_book.setdefault(owner, {})[info.address] = info
        self._show(ContactsChanged(owner, contact=info))
        return info

    def _release_held(self, owner: str, address: str) -> None:
        for event in self.held.pop((owner, address), []):
            self._show(event)

    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo:
        self._poke()
        self.calls.append(("add_contact", (owner, link_or_address, petname)))
        self.identity(owner)
        invite = parse_invite(link_or_address)
        if invite.address == owner:
            raise UserError("that is this identity's own address")
        petname = " ".join(petname.split())[:64] or invite.nick or invite.address[:8]
        info = ContactInfo(owner, invite.address, petname, ContactState.ACCEPTED,
                           fingerprint(invite.public), NO_KEYS)
        for peer in invite.peers:
            self.add_peer(peer)
        info = self._change(owner, info)
        self._release_held(owner, info.address)
        return info

    def accept_contact(self, owner: str, address: str) -> ContactInfo:
        self._poke()
        self.calls.append(("accept_contact", (owner, address)))
        info = self._contact(owner, address)
        if info is None:
            raise UserError(f"{address[:12]}… is not a contact of this identity")
        info = self._change(owner, replace(info, state=ContactState.ACCEPTED))
        self._release_held(owner, address)
        return info

    def block_contact(self, owner: str, address: str) -> ContactInfo:
        self._poke()
        self.calls.append(("block_contact", (owner, address)))
        info = self._contact(owner, check_address(address)) or ContactInfo(
            owner, address, address[:8], ContactState.BLOCKED, fingerprint(decode_address(address)),
            NO_KEYS)
        self.held.pop((owner, address), None)
        return self._change(owner, replace(info, state=ContactState.BLOCKED))

    def new_session(self, owner: str, address: str) -> None:
        self._poke()
        self.calls.append(("new_session", (owner, address)))
        info = self._contact(owner, check_address(address))
        if info is None or info.state != ContactState.ACCEPTED:
            raise UserError("a new session starts only with an accepted contact")

    def remove_contact(self, owner: str, address: str) -> None:
        self._poke()
        self.calls.append(("remove_contact", (owner, address)))
        if self._contact(owner, address) is None:
            raise UserError(f"{address[:12]}… is not a contact of this identity")
        del self.contact_book[owner][address]
        self.held.pop((owner, address), None)
        self._show(ContactsChanged(owner, removed=address))

    def invite_link(self, owner: str) -> str:
        info = self.identity(owner)
        return encode_invite(Invite(public=decode_address(owner), nick=info.nick))

    # --- messaging ----------------------------------------------------------

    async def send_message(self, owner: str, to: str, text: str, *, receipt: bool = True,
                           message_id: str = "", reply_to: str = "",
                           reply_to_own: bool = False) -> bytes:
        if reply_to and self.known.knows(owner, to, reply_to):
            self.acts_sent.append((owner, to, Act(ActKind.REPLY, reply_to[:64],
                                                  to_recipient=not reply_to_own), text))
        c = self._contact(owner, check_address(to))
        if c is not None and c.state is ContactState.BLOCKED:
            raise UserError("this contact is blocked; unblock it to write to it")
        if c is None:  # writing to an address makes it a contact
            self._change(owner, ContactInfo(owner, to, to[:8], ContactState.ACCEPTED,
                                            fingerprint(decode_address(to)), NO_KEYS))
        if self.send_gate is not None:
            self.sends_waiting += 1
            try:
                await self.send_gate.wait()
            finally:
                self.sends_waiting -= 1
        if self.send_error is not None:
            err, self.send_error = self.send_error, None
            raise err
        envelope_id = os.urandom(32)
        self.sent.append(SentMessage(owner, to, text, receipt, message_id, envelope_id))
        self.known.add(owner, to, message_id[:64])
        self.history.sent(owner, to, text, message_id, envelope_id)
        if self._local(to) is not None:  # the network would bring it back to this daemon
            self.emit(MessageArrived(to=to, sender=owner, text=text, sent_at_ms=0,
                                     envelope_id=envelope_id, receipt_wanted=receipt,
                                     message_id=message_id[:64]))
        await self._notify()
        return envelope_id

    async def send_receipt(self, owner: str, to: str, envelope_ids: list[bytes],
                           message_ids: list[str]) -> None:
        self.identity(owner)
        self.receipts_sent.append((owner, to, envelope_ids, message_ids))
        if self._local(to) is not None:
            self.emit(ReceiptArrived(to=to, sender=owner, acked=tuple(envelope_ids),
                                     message_ids=tuple(message_ids)))
        await self._notify()

    def chat_states_enabled(self) -> bool:
        return self.chat_states

    async def send_chat_state(self, owner: str, to: str, state: str) -> bool:
        if state.lower() not in {s.element for s in ChatState}:
            raise UserError(f"{state[:20]!r} is not a chat state; XEP-0085 names active, "
                            "composing, paused, inactive and gone")
        if not self.chat_states:
            return False
        c = self._contact(owner, to)
        if c is None or c.state is not ContactState.ACCEPTED:
            return False
        self.chat_states_sent.append((owner, to, state))
        await self._notify()
        return True

    def markers_enabled(self) -> bool:
        return self.markers

    def upload_limit(self) -> int:
        return self.files.max_upload if self.files.base_url else 0

    def upload_slot(self, owner: str, name: str, size: int,
                    media_type: str = "") -> tuple[str, str]:
        self.identity(owner)
        return self.files.new_slot(owner, name, size, media_type)

    def send_file(self, owner: str, to: str, url: str, message_id: str = "") -> str | None:
        token = self.files.token_of(url.strip())
        f = self.files.get(token) if token else None
        if f is None or f.owner != owner:
            return None
        c = self._contact(owner, to)
        if c is None or c.state is not ContactState.ACCEPTED:
            raise UserError("files go to accepted contacts only")
        self.files_sent.append((owner, to, f.name, message_id))
        if self._local(to) is not None:  # the network would bring it to this daemon
            copy = self.files.put(to, f.name, f.media_type, f.data, sender=owner)
            self.emit(MessageArrived(to=to, sender=owner, text=self.files.url(copy),
                                     sent_at_ms=0, envelope_id=os.urandom(32),
                                     receipt_wanted=False, message_id=message_id[:64],
                                     url=self.files.url(copy)))
        return self.history.sent(owner, to, url.strip(), message_id)

    def presence_enabled(self) -> bool:
        return self.presence

    def send_act(self, owner: str, to: str, act: Act, text: str = "",
                 message_id: str = "", receipt: bool = False) -> bool:
        if not self.known.knows(owner, to, act.ref):
            raise UserError(f"no message with id {act.ref[:64]!r} in this conversation (it "
                            "may be too old)")
        if act.kind is ActKind.DISPLAYED and not self.markers:
            return False
        c = self._contact(owner, to)
        if c is None or c.state is not ContactState.ACCEPTED:
            raise UserError("corrections, reactions, retractions and read markers go to "
                            "accepted contacts only")
        self.acts_sent.append((owner, to, act, text))
        if archived_act(act, mine=False):  # as the service: its own stanza in the archive
            self.history.sent(owner, to, text, message_id[:64], act=archived_act(act, mine=False))
        return True

    def set_presence(self, owner: str, show: str, status: str = "") -> None:
        if (show or "available") not in {s.name.lower() for s in Show}:
            raise UserError(f"{show[:20]!r} is not a presence; RFC 6121 names chat, away, "
                            "xa and dnd")
        self.identity(owner)
        if self.presence:
            self.presences_set.append((owner, show, status))

    def contact_presence(self, owner: str, address: str) -> PresenceArrived | None:
        return self.contact_presences.get((owner, address)) if self.presence else None

    def share_avatar(self, owner: str, data: bytes | None, *, send: bool = True) -> None:
        self.identity(owner)
        if data is not None:
            try:
                avatar.media_type(data)
            except MalformedError as exc:
                raise UserError(str(exc)) from None
        self.avatars_shared.append((owner, data, send))
        if data is None or not send:
            return
        for other, book in self.contact_book.items():  # the identities here it reaches
            theirs, mine = book.get(owner), self.contact_book.get(owner, {}).get(other)
            if (theirs is not None and mine is not None
                    and theirs.state is mine.state is ContactState.ACCEPTED):
                self.contact_avatars[(other, owner)] = (avatar.media_type(data), data)
                self._show(ContactAvatarChanged(other, owner, hashlib.sha1(data).hexdigest(),
                                                avatar.media_type(data), len(data)))

    def contact_avatar(self, owner: str, address: str) -> tuple[str, bytes] | None:
        return self.contact_avatars.get((owner, address))

    async def send_room_message(self, owner: str, room: str, text: str) -> bytes:
        if room != "public":
            raise UserError(f"there is no room '{room}'; the public room is 'public'")
        self.identity(owner)
        self.room_sent.append((owner, room, text))
        await self._notify()
        return os.urandom(32)

    # --- private groups, as bridge.groups decides (no network: nothing travels) ---

    def groups(self, owner: str) -> list[GroupInfo]:
        self.identity(owner)
        return [g for (o, _), g in self.group_book.items() if o == owner]

    def create_group(self, owner: str, name: str) -> GroupInfo:
        self.identity(owner)
        name = " ".join(name.split())
        if not name or len(name.encode()) > 64:
            raise UserError("a group's name is 1 to 64 bytes")
        if len(self.groups(owner)) >= 64:
            raise UserError("this identity keeps at most 64 groups")
        info = GroupInfo(os.urandom(16).hex(), name, owner, (owner,), 1, True)
        self.group_book[(owner, info.group)] = info
        self.emit(GroupChanged(owner, info))
        return info

    def _regroup(self, owner: str, group: str, members: tuple[str, ...]) -> GroupInfo:
        old = self.group_book.get((owner, group))
        if old is None or not old.member:
            raise UserError("there is no such group")
        if old.creator != owner:
            raise UserError("only the group's creator changes its members")
        if len(members) > 32:
            raise UserError("a group has at most 32 members")
        info = GroupInfo(group, old.name, owner, tuple(sorted(members)), old.version + 1, True)
        self.group_book[(owner, group)] = info
        self.emit(GroupChanged(owner, info))
        return info

    def invite_to_group(self, owner: str, group: str, address: str) -> GroupInfo:
        c = self._contact(owner, address)
        if c is None or c.state is not ContactState.ACCEPTED:
            raise UserError("only an accepted contact can be invited to a group")
        old = self.group_book.get((owner, group))
        if old is not None and address in old.members:
            return old
        return self._regroup(owner, group, (*(old.members if old else ()), address))

    def remove_from_group(self, owner: str, group: str, address: str) -> GroupInfo:
        old = self.group_book.get((owner, group))
        if old is None or address not in old.members:
            raise UserError("that address is not a member of the group")
        if address == old.creator:
            raise UserError("the creator cannot be removed from their group")
        return self._regroup(owner, group, tuple(m for m in old.members if m != address))

    async def send_group_message(self, owner: str, group: str, text: str,
                                 message_id: str = "") -> None:
        info = self.group_book.get((owner, group))
        if info is None or not info.member:
            raise UserError("you are not a member of this group")
        if not text:
            raise UserError("a group message has text")
        self.group_sent.append((owner, group, text, message_id))
        await self._notify()

    def delivered(self, envelope_id: bytes) -> None:
        self.delivered_ids.append(envelope_id)

    def archive_query(self, owner: str, query: Query) -> Page:
        self.identity(owner)
        return self.history.query(owner, query)

    # --- events and health --------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    def health(self) -> NodeHealth:
        return NodeHealth(peers=[dict(p) for p in self.peer_list], stored_envelopes=7,
                          difficulty_bits=20)

    # --- peers --------------------------------------------------------------

    def add_peer(self, host_port: str) -> None:
        peer = parse_peer(host_port)
        if all(p["address"] != peer for p in self.peer_list):
            self.peer_list.append({"address": peer, "state": "connecting", "direction": "out"})

    def remove_peer(self, host_port: str) -> None:
        peer = host_port.strip()
        known = [p for p in self.peer_list if p["address"] == peer]
        if not known:
            raise UserError(f"{peer} is not a peer of this node")
        self.peer_list.remove(known[0])

    def xmpp_settings(self) -> dict[str, object]:
        return {}


def _conforms(fake: FakeService) -> ServiceAPI:
    """Never called: mypy fails here when FakeService drifts from ServiceAPI."""
    return fake


# --- XMPP test clients ---------------------------------------------------------------
# A real slixmpp client (what users' clients do) and a raw socket client (what
# an attacker does), both over loopback against a running C2SServer.

STREAM_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


class SlixClient:
    """A slixmpp ``ClientXMPP`` logged in to the test server, its stanzas queued."""

    def __init__(self, jid: str, password: str, cert_path: Path | None,
                 plugins: tuple[str, ...] = (), sasl_mech: str | None = None,
                 direct_tls: bool = False) -> None:
        from slixmpp import ClientXMPP

        self.xmpp = ClientXMPP(jid, password, sasl_mech=sasl_mech)
        self.xmpp.enable_direct_tls = direct_tls  # slixmpp 1.17 tries direct TLS first
        self.xmpp.ca_certs = cert_path
        for plugin in ("xep_0030", "xep_0199", *plugins):
            self.xmpp.register_plugin(plugin)
        self.messages: asyncio.Queue[object] = asyncio.Queue()
        self.presences: asyncio.Queue[object] = asyncio.Queue()
        self.started = asyncio.Event()
        self.failed = asyncio.Event()
        self.closed = asyncio.Event()
        self.xmpp.add_event_handler("session_start", self._start)
        self.xmpp.add_event_handler("message", self.messages.put_nowait)
        self.xmpp.add_event_handler("presence", self.presences.put_nowait)
        self.xmpp.add_event_handler("failed_all_auth", lambda _e: self.failed.set())
        self.xmpp.add_event_handler("disconnected", lambda _e: self.closed.set())

    async def _start(self, _event: object) -> None:
        await self.xmpp.get_roster()
        self.xmpp.send_presence()
        self.started.set()

    async def connect(self, port: int, timeout: float = 15.0) -> SlixClient:
        self.xmpp.connect("127.0.0.1", port)
        done = asyncio.ensure_future(self.started.wait())
        fail = asyncio.ensure_future(self.failed.wait())
        await asyncio.wait({done, fail}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        fail.cancel()
        return self

    async def next_message(self, predicate: Callable[[object], bool] = lambda m: True,
                           timeout: float = 10.0) -> object:
        async def find() -> object:
            while True:
                msg = await self.messages.get()
                if predicate(msg):
                    return msg

        return await asyncio.wait_for(find(), timeout)

    async def next_presence(self, predicate: Callable[[object], bool] = lambda p: True,
                            timeout: float = 10.0) -> object:
        async def find() -> object:
            while True:
                presence = await self.presences.get()
                if predicate(presence):
                    return presence

        return await asyncio.wait_for(find(), timeout)

    async def close(self) -> None:
        if not self.closed.is_set() and self.xmpp.transport is not None:
            self.xmpp.disconnect()
            try:
                await asyncio.wait_for(self.closed.wait(), 5)
            except TimeoutError:
                self.xmpp.abort()


class RawClient:
    """Speaks XMPP bytes directly, to send what no polite client would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def expect(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read until ``marker`` has arrived; returns everything read so far."""
        async def read() -> bytes:
            while marker not in self.buffer:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"closed before {marker!r}; got {self.buffer!r}")
                self.buffer += chunk
            return self.buffer

        return await asyncio.wait_for(read(), timeout)

    async def read_to_eof(self, timeout: float = 10.0) -> bytes:
        async def read() -> bytes:
            while True:
                try:
                    chunk = await self.reader.read(65536)
                except (ConnectionError, OSError):
                    return self.buffer
                if not chunk:
                    return self.buffer
                self.buffer += chunk

        return await asyncio.wait_for(read(), timeout)

    async def starttls(self, cert_path: object) -> None:
        import ssl

        self.send(STREAM_HEADER)
        await self.expect(b"</stream:features>")
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.expect(b"<proceed")
        ctx = ssl.create_default_context(cafile=str(cert_path))
        await self.writer.start_tls(ctx, server_hostname="localhost")
        self.buffer = b""
        self.send(STREAM_HEADER)
        await self.expect(b"</stream:features>")
        self.buffer = b""

    async def plain_auth(self, user: str, password: str) -> bytes:
        """One PLAIN attempt; returns b"success" or the failure element's bytes."""
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        self.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  + token + b"</auth>")

        async def answer() -> bytes:
            while True:
                if b"<success" in self.buffer:
                    self.buffer = b""
                    return b"success"
                if b"</failure>" in self.buffer:
                    reply, _, self.buffer = self.buffer.partition(b"</failure>")
                    return reply
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"closed during auth; got {self.buffer!r}")
                self.buffer += chunk

        return await asyncio.wait_for(answer(), 10)

    async def login(self, cert_path: object, user: str, password: str) -> None:
        await self.starttls(cert_path)
        assert await self.plain_auth(user, password) == b"success"
        self.send(STREAM_HEADER)
        await self.expect(b"</stream:features>")
        self.send(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        await self.expect(b"</iq>")
        self.buffer = b""

    def close(self) -> None:
        self.writer.close()
