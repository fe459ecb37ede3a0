"""Who is who on the embedded server: the JID layout and address <-> JID mapping.

One place decides the names a client sees. On the embedded server: the
server domain (``localhost``), P2P contacts as ``<address>@p2p.<domain>``, the
public room service at ``rooms.<domain>`` and the gateway bot at
``paranoim@<domain>``. As an XEP-0114 component (``component=True``) there is
one domain, the component's own (``p2p.example.org``): contacts are
``<address>@p2p.example.org``, the bot ``paranoim@p2p.example.org`` and the
public room ``public@p2p.example.org`` — the two reserved localparts are not
addresses (an address has 56 characters).
"""

from __future__ import annotations

from dataclasses import dataclass

from slixmpp import JID
from slixmpp.jid import InvalidJID

__all__ = ["Domains", "InvalidJID", "parse_jid"]


@dataclass(frozen=True, slots=True)
class Domains:
    server: str = "localhost"
    component: bool = False

    @property
    def contacts(self) -> str:
        return self.server if self.component else f"p2p.{self.server}"

    @property
    def rooms(self) -> str:
        return self.server if self.component else f"rooms.{self.server}"

    @property
    def bot(self) -> str:
        return f"paranoim@{self.server}"

    @property
    def public_room(self) -> str:
        return f"public@{self.rooms}"

    def user(self, username: str) -> str:
        return f"{username}@{self.server}"

    def contact(self, address: str) -> str:
        return f"{address}@{self.contacts}"

    def address_of(self, jid: JID) -> str | None:
        """The P2P address a JID names, or None if it is not a contact JID."""
        if jid.domain == self.contacts and jid.local and jid.bare not in (
            self.bot, self.public_room
        ):
            return jid.local.lower()  # addresses are lowercase base32; nodeprep agrees
        return None

    def is_room(self, jid: JID) -> bool:
        """Whether stanzas to ``jid`` are for the room service."""
        if self.component:
            return jid.bare == self.public_room
        return jid.domain == self.rooms


def parse_jid(value: str | None) -> JID | None:
    """A JID from an attribute, None when absent; raises InvalidJID when malformed."""
    if not value:
        return None
    return JID(value)
