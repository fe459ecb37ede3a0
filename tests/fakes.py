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
    delivered_ids: list[bytes] = field(default_factory=list)
    send_error: UserError | None = None  # next send_message raises this
    send_gate: asyncio.Event | None = None  # if set, send_message waits on it (slow PoW)
    chat_states: bool = False  # [xmpp] chat_states
    chat_states_sent: list[tuple[str, str, str]] = field(default_factory=list)
    _tick: asyncio.Event = field(default_factory=asyncio.Event)

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

    def delivered(self, envelope_id: bytes) -> None:
        self.delivered_ids.append(envelope_id)

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
        self._poke()
        self.calls.append(("add_contact", (owner, link_or_address, petname)))
        address = link_or_address.removeprefix("paranoim:")
        check_address(address)
        info = ContactInfo(owner, address, petname or address[:8], ContactState.ACCEPTED,
                           f"FP-{address[:4]}")
        return self._change(owner, info)

    def accept_contact(self, owner: str, address: str) -> ContactInfo:
        self._poke()
        self.calls.append(("accept_contact", (owner, address)))
        info = self.contact_book.get(owner, {}).get(address)
        if info is None:
            raise UserError("no such contact")
        return self._change(owner, replace(info, state=ContactState.ACCEPTED))

    def block_contact(self, owner: str, address: str) -> ContactInfo:
        self._poke()
        self.calls.append(("block_contact", (owner, address)))
        info = self.contact_book.get(owner, {}).get(address) or ContactInfo(
            owner, check_address(address), address[:8], ContactState.BLOCKED, "FP"
        )
        return self._change(owner, replace(info, state=ContactState.BLOCKED))

    def remove_contact(self, owner: str, address: str) -> None:
        self._poke()
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

    def chat_states_enabled(self) -> bool:
        return self.chat_states

    async def send_chat_state(self, owner: str, to: str, state: str) -> bool:
        if not self.chat_states:
            return False
        self.chat_states_sent.append((owner, to, state))
        await self._notify()
        return True

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


# --- XMPP test clients ---------------------------------------------------------------
# A real slixmpp client (what users' clients do) and a raw socket client (what
# an attacker does), both over loopback against a running C2SServer.

STREAM_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


class SlixClient:
    """A slixmpp ``ClientXMPP`` logged in to the test server, its stanzas queued."""

    def __init__(self, jid: str, password: str, cert_path: object,
                 plugins: tuple[str, ...] = (), sasl_mech: str | None = None,
                 direct_tls: bool = False) -> None:
        from slixmpp import ClientXMPP

        self.xmpp = ClientXMPP(jid, password, sasl_mech=sasl_mech)
        self.xmpp.enable_direct_tls = direct_tls  # slixmpp 1.17 tries direct TLS first
        self.xmpp.ca_certs = cert_path
        self.xmpp.reconnect_max_attempts = 0
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
