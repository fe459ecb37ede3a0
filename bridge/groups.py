"""Private groups (docs/groups.md): the states an identity keeps, what it sends, and
what it accepts.

The creator signs every state (members, name, version); the state lives in the key
file and goes to every member, and to a removed one, in each one's pairwise session
as a group record (``core.groups``). A message goes from its author to the creator,
whose daemon checks the author is a member and passes it on to every other member,
each in their pairwise session; the author's signature travels with it, so no relay
can put words in a member's mouth. Members need be contacts of the creator only.

Refused, and never kept: a record from anyone but an accepted contact, a state not
signed by its creator or not sent by them, an older or equal version, a group past
``MAX_GROUPS``, a message whose author is not a member of the state held, a message
from a member that did not come through the creator (or from the creator itself).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Final

from bridge.contacts import ContactBook
from bridge.core.address import decode_address, encode_address
from bridge.core.errors import LocalProtocolError, RemoteProtocolError, UserError
from bridge.core.groups import MAX_MEMBERS, GroupMessage, GroupRecord, GroupState
from bridge.core.reader import Reader
from bridge.core.records import DirectMessage
from bridge.events import Event, GroupChanged, GroupInfo, GroupMessageArrived
from bridge.identities import IdentityBook
from bridge.outbox import Outbox
from bridge.store.seen import ExpiringIds
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

MAX_GROUPS: Final = 64  # groups one identity keeps (its own and those it was invited to)
SEEN_TTL: Final = 7 * 24 * 3600  # a group message's id is remembered this long (RAM)
MAX_SEEN: Final = 10_000  # and at most this many of them


class GroupError(UserError):
    pass


def _load(raw: str) -> GroupState:
    r = Reader(bytes.fromhex(raw))
    r.u8()
    return GroupState.parse_body(r)


def _seen_key(msg: GroupMessage) -> bytes:
    return msg.group_id + msg.author + msg.message_id.encode()


def info_of(state: GroupState, me: bytes) -> GroupInfo:
    return GroupInfo(group=state.group_id.hex(), name=state.name,
                     creator=encode_address(state.creator),
                     members=tuple(encode_address(m) for m in state.members),
                     version=state.version, member=me in state.members)


class GroupBook:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, outbox: Outbox,
                 tasks: TaskSet, emit: Callable[[Event], None], clock: Callable[[], int],
                 report: Callable[[str], None]) -> None:
        self.ids, self.contacts, self.outbox = ids, contacts, outbox
        self.tasks, self.emit, self.clock, self.report = tasks, emit, clock, report
        self._seen = ExpiringIds(MAX_SEEN)  # (group, author, message id) shown or passed on

    # --- what the identity keeps -------------------------------------------------------

    def _me(self, owner: str) -> tuple[bytes, bytes]:
        ident = self.ids.ident(self.ids.rec(owner))
        return ident.public, ident.secret_key

    def _state(self, owner: str, group: str) -> GroupState | None:
        raw = self.ids.rec(owner).groups.get(group)
        return _load(raw) if raw is not None else None

    def _keep(self, owner: str, state: GroupState) -> None:
        rec = self.ids.rec(owner)
        gid = state.group_id.hex()
        if gid not in rec.groups and len(rec.groups) >= MAX_GROUPS:
            raise GroupError(f"this identity keeps at most {MAX_GROUPS} groups")
        rec.groups = {**rec.groups, gid: state.encode().hex()}
        self.ids.save_soon()

    def groups(self, owner: str) -> list[GroupInfo]:
        me, _ = self._me(owner)
        return [info_of(_load(raw), me) for raw in self.ids.rec(owner).groups.values()]

    def group(self, owner: str, group: str) -> GroupInfo:
        state = self._state(owner, group)
        if state is None:
            raise GroupError("there is no such group")
        return info_of(state, self._me(owner)[0])

    # --- changes, made by the creator ----------------------------------------------------

    def create(self, owner: str, name: str) -> GroupInfo:
        me, sk = self._me(owner)
        name = " ".join(name.split())
        if not name or len(name.encode()) > 64:
            raise GroupError("a group's name is 1 to 64 bytes")
        state = GroupState.make(sk, secrets.token_bytes(16), 1, name, me, {me})
        self._keep(owner, state)
        info = info_of(state, me)
        self.emit(GroupChanged(owner, info))
        return info

    def _change(self, owner: str, group: str, members: set[bytes]) -> GroupState:
        me, sk = self._me(owner)
        old = self._state(owner, group)
        if old is None or me not in old.members:
            raise GroupError("there is no such group")
        if old.creator != me:
            raise GroupError("only the group's creator changes its members")
        if len(members) > MAX_MEMBERS:
            raise GroupError(f"a group has at most {MAX_MEMBERS} members")
        state = GroupState.make(sk, old.group_id, old.version + 1, old.name, me,
                                frozenset(members))
        self._keep(owner, state)
        self.emit(GroupChanged(owner, info_of(state, me)))
        return state

    def invite(self, owner: str, group: str, address: str) -> GroupInfo:
        """Add an accepted contact; every member, the new one too, gets the new state."""
        if self.contacts.accepted(owner, address) is None:
            raise GroupError("only an accepted contact can be invited to a group")
        old = self._state(owner, group)
        them = decode_address(address)
        if old is not None and them in old.members:
            return info_of(old, self._me(owner)[0])
        state = self._change(owner, group, set(old.members if old else ()) | {them})
        self._send_state(owner, state, state.members)
        return info_of(state, state.creator)

    def remove(self, owner: str, group: str, address: str) -> GroupInfo:
        """Remove a member; the others and the removed one get the new state, and from
        then on nothing of the group is sent to the removed one."""
        old = self._state(owner, group)
        them = decode_address(address)
        if old is None or them not in old.members:
            raise GroupError("that address is not a member of the group")
        if them == old.creator:
            raise GroupError("the creator cannot be removed from their group")
        state = self._change(owner, group, set(old.members) - {them})
        self._send_state(owner, state, (*state.members, them))
        return info_of(state, state.creator)

    def _send_state(self, owner: str, state: GroupState, to: tuple[bytes, ...]) -> None:
        for key in to:
            if key != state.creator:
                self._send(owner, encode_address(key), state)

    # --- messages ------------------------------------------------------------------------

    async def send(self, owner: str, group: str, text: str, message_id: str) -> None:
        """A member's message: to the creator, or, from the creator, to every member."""
        me, sk = self._me(owner)
        state = self._state(owner, group)
        if state is None or me not in state.members:
            raise GroupError("you are not a member of this group")
        if not text:
            raise GroupError("a group message has text")
        try:
            msg = GroupMessage.make(sk, me, state.group_id, state.version,
                                    self.clock() * 1000, message_id[:64] or secrets.token_hex(8),
                                    text)
        except LocalProtocolError as exc:
            raise GroupError(str(exc)) from None
        self._seen.put(_seen_key(msg), self.clock() + SEEN_TTL)
        if me == state.creator:
            self._fan_out(owner, state, msg)
        else:
            await self.outbox.send_message(owner, encode_address(state.creator), "",
                                           receipt=False, group=msg)

    def _fan_out(self, owner: str, state: GroupState, msg: GroupMessage) -> None:
        """The creator passes a message on: one envelope per member but the author."""
        for key in state.members:
            if key not in (state.creator, msg.author):
                self._send(owner, encode_address(key), msg)

    def _send(self, owner: str, to: str, record: GroupRecord) -> None:
        async def go() -> None:
            try:
                await self.outbox.send_message(owner, to, "", receipt=False, group=record)
            except (UserError, RemoteProtocolError) as exc:
                self.report(f"a group record to {to[:8]}… was not sent: {exc}")
        self.tasks.spawn(go(), name="group send")

    # --- arrivals ------------------------------------------------------------------------

    def on_record(self, me: str, sender: str, accepted: bool, record: DirectMessage) -> None:
        """A group record in a direct message from ``sender``; refused ones raise
        RemoteProtocolError or UserError (the inbox reports them), nothing kept."""
        assert record.group is not None
        if not accepted:
            raise GroupError("a group record from someone who is not an accepted contact "
                             "was ignored")
        if isinstance(record.group, GroupState):
            self._on_state(me, sender, record.group)
        else:
            self._on_message(me, sender, record.group)

    def _on_state(self, owner: str, sender: str, state: GroupState) -> None:
        me, _ = self._me(owner)
        if decode_address(sender) != state.creator:
            raise GroupError("a group state not sent by the group's creator was ignored")
        state.verify()
        gid = state.group_id.hex()
        old = self._state(owner, gid)
        if old is not None and old.creator != state.creator:
            raise GroupError("a group state from another creator under a known id was ignored")
        if old is not None and state.version <= old.version:
            return  # not news (it came again, or late)
        if old is None and me not in state.members:
            return  # a group we were never in
        self._keep(owner, state)
        invited = me in state.members and (old is None or me not in old.members)
        self.emit(GroupChanged(owner, info_of(state, me), invited_by=sender if invited else ""))

    def _on_message(self, owner: str, sender: str, msg: GroupMessage) -> None:
        me, _ = self._me(owner)
        gid = msg.group_id.hex()
        state = self._state(owner, gid)
        if state is None or me not in state.members:
            raise GroupError("a message of a group this identity is not in was ignored")
        from_key = decode_address(sender)
        relayed = from_key == state.creator
        if not relayed and (me != state.creator or from_key != msg.author):
            raise GroupError("a group message that did not come through the creator was ignored")
        if msg.author not in state.members:
            raise GroupError("a group message from someone who is not a member was ignored")
        msg.verify()
        key = _seen_key(msg)
        if self._seen.get(key, 0) > self.clock():
            return
        self._seen.put(key, self.clock() + SEEN_TTL)
        if me == state.creator:
            self._fan_out(owner, state, msg)
        self.emit(GroupMessageArrived(to=owner, group=gid, sender=encode_address(msg.author),
                                      text=msg.text, message_id=msg.message_id,
                                      sent_at_ms=msg.sent_at_ms))
