"""Sessions the gateway talks to, by account and resource.

A ``Session`` is what the translation layer (gateway, roster, room, server
IQs) needs of "a client of this identity": who it is, where stanzas to it go,
and a little per-client state. The embedded listener's ``C2SConnection`` is
one (a bound client connection); the XEP-0114 component's
``ComponentSession`` is another (a user of the server the component is
attached to). Neither the gateway nor the roster knows which it has.

Several clients (resources) may be attached to one identity at once; the
gateway delivers what the network sends an identity to every available one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from slixmpp import JID
    from slixmpp.xmlstream import ElementBase

    from bridge.events import IdentityInfo
    from bridge.xmpp.streamerror import StreamError


class Session(Protocol):
    owner: IdentityInfo | None  # the local identity; None before login/registration
    jid: JID  # where stanzas for this session go
    available: bool  # receives what the network sends the identity
    carbons: bool  # XEP-0280 enabled
    roster_requested: bool  # gets roster pushes
    rooms: dict[str, str]  # room JID -> our nick in it
    room_seen: dict[str, set[str]]  # room JID -> occupant nicks announced

    @property
    def bare(self) -> str: ...

    def send(self, stanza: ElementBase | ET.Element) -> None: ...

    def write(self, data: bytes, confirm: Callable[[bool], None] | None = None) -> None:
        """One stanza already serialised (``stanzas.chat_message``). ``confirm`` is
        told True once the client has it (at the write, or on its XEP-0198
        acknowledgement), or False when its session ended without acknowledging."""
        ...

    def close(self, err: StreamError | None = None) -> None: ...


class Sessions:
    def __init__(self) -> None:
        self._by_owner: dict[str, dict[str, Session]] = {}

    def add(self, conn: Session) -> Session | None:
        """Register a session; returns the one it replaces (same resource)."""
        assert conn.owner is not None
        resources = self._by_owner.setdefault(conn.owner.address, {})
        old = resources.get(conn.jid.resource)
        resources[conn.jid.resource] = conn
        return old if old is not conn else None

    def remove(self, conn: Session) -> bool:
        if conn.owner is None:
            return False
        resources = self._by_owner.get(conn.owner.address, {})
        if resources.get(conn.jid.resource) is not conn:
            return False
        del resources[conn.jid.resource]
        if not resources:
            self._by_owner.pop(conn.owner.address, None)
        return True

    def of(self, owner: str) -> list[Session]:
        return list(self._by_owner.get(owner, {}).values())

    def available(self, owner: str) -> list[Session]:
        return [c for c in self.of(owner) if c.available]

    def resource(self, owner: str, resource: str) -> Session | None:
        return self._by_owner.get(owner, {}).get(resource)

    def all(self) -> list[Session]:
        return [c for resources in self._by_owner.values() for c in resources.values()]
