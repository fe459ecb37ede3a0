"""An in-memory stand-in for ``bridge.api.ServiceAPI`` for the XMPP tests.

It keeps identities and contacts in dicts, records what the gateway asks it
to send, and lets a test push events as the network would. Tests wait on its
asyncio conditions instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bridge.core.errors import BadAddressError, UserError
from bridge.events import (
    ContactInfo,
    ContactsChanged,
    ContactState,
    Event,
    IdentityInfo,
    NodeHealth,
)


def make_address(seed: bytes | None = None) -> str:
    """A 56-character lowercase base32 string shaped like a real address."""
    raw = seed.ljust(35, b"\0")[:35] if seed else os.urandom(35)
    return base64.b32encode(raw).decode().lower()


def check_address(address: str) -> str:
    if len(address) != 56:
        raise BadAddressError(f"an address has 56 characters, this one has {len(address)}")
    if any(c not in "abcdefghijklmnopqrstuvwxyz234567" for c in address):
        raise BadAddressError("an address uses only the letters a-z and digits 2-7")
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
    send_error: UserError | None = None  # next send_message raises this
    send_gate: asyncio.Event | None = None  # if set, send_message waits on it (slow PoW)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    # --- test helpers -------------------------------------------------------

    def add_user(self, username: str, password: str, nick: str = "") -> IdentityInfo:
        info = IdentityInfo(
            address=make_address(username.encode()),
            nick=nick or username.capitalize(),
            username=username,
            xmpp_password=password,
            fingerprint=f"FP-{username}",
            created_at=0,
        )
        self.identities_by_name[username] = info
        self.contact_book.setdefault(info.address, {})
        return info

    def put_contact(self, owner: str, address: str, petname: str,
                    state: ContactState = ContactState.ACCEPTED) -> ContactInfo:
        info = ContactInfo(owner, address, petname, state, f"FP-{petname}")
        self.contact_book.setdefault(owner, {})[address] = info
        return info

    def emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            listener(event)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout)

    # --- identities ---------------------------------------------------------

    def identities(self) -> list[IdentityInfo]:
        return list(self.identities_by_name.values())

    def identity(self, address: str) -> IdentityInfo:
        for info in self.identities_by_name.values():
            if info.address == address:
                return info
        raise UserError("no such identity")

    def identity_by_username(self, username: str) -> IdentityInfo | None:
        return self.identities_by_name.get(username)

    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        info = self.identities_by_name.get(username)
        expected = info.xmpp_password if info else "\0invalid"
        ok = hmac.compare_digest(expected.encode(), password.encode())
        return info if ok and info else None

    # --- contacts -----------------------------------------------------------

    def contacts(self, owner: str) -> list[ContactInfo]:
        return list(self.contact_book.get(owner, {}).values())

    def _change(self, owner: str, info: ContactInfo) -> ContactInfo:
        self.contact_book.setdefault(owner, {})[info.address] = info
        self.emit(ContactsChanged(owner, contact=info))
        return info

    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo:
        self.calls.append(("add_contact", (owner, link_or_address, petname)))
        address = link_or_address.removeprefix("paranoim:")
        check_address(address)
        info = ContactInfo(owner, address, petname or address[:8], ContactState.ACCEPTED,
                           f"FP-{address[:4]}")
        return self._change(owner, info)

    def accept_contact(self, owner: str, address: str) -> ContactInfo:
        self.calls.append(("accept_contact", (owner, address)))
        info = self.contact_book.get(owner, {}).get(address)
        if info is None:
            raise UserError("no such contact")
        return self._change(owner, replace(info, state=ContactState.ACCEPTED))

    def block_contact(self, owner: str, address: str) -> ContactInfo:
        self.calls.append(("block_contact", (owner, address)))
        info = self.contact_book.get(owner, {}).get(address) or ContactInfo(
            owner, check_address(address), address[:8], ContactState.BLOCKED, "FP"
        )
        return self._change(owner, replace(info, state=ContactState.BLOCKED))

    def remove_contact(self, owner: str, address: str) -> None:
        self.calls.append(("remove_contact", (owner, address)))
        self.contact_book.get(owner, {}).pop(address, None)
        self.emit(ContactsChanged(owner, removed=address))

    def invite_link(self, owner: str) -> str:
        return f"paranoim:{owner}"

    # --- messaging ----------------------------------------------------------

    async def send_message(self, owner: str, to: str, text: str, *, receipt: bool = True,
                           message_id: str = "") -> bytes:
        check_address(to)
        if self.send_gate is not None:
            await self.send_gate.wait()
        if self.send_error is not None:
            err, self.send_error = self.send_error, None
            raise err
        envelope_id = os.urandom(32)
        self.sent.append(SentMessage(owner, to, text, receipt, message_id, envelope_id))
        await self._notify()
        return envelope_id

    async def send_receipt(self, owner: str, to: str, envelope_ids: list[bytes],
                           message_ids: list[str]) -> None:
        self.receipts_sent.append((owner, to, envelope_ids, message_ids))
        await self._notify()

    async def send_room_message(self, owner: str, room: str, text: str) -> bytes:
        self.room_sent.append((owner, room, text))
        await self._notify()
        return os.urandom(32)

    # --- events and health --------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def health(self) -> NodeHealth:
        return NodeHealth(peers=[{"host": "127.0.0.1:1"}], stored_envelopes=7,
                          difficulty_bits=20)

    def xmpp_settings(self) -> dict[str, object]:
        return {}
