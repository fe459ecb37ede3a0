"""Who is who on the embedded server: the JID layout and address <-> JID mapping.

One place decides the names a client sees: the server domain (``localhost``),
P2P contacts as ``<address>@p2p.<domain>``, the public room service at
``rooms.<domain>`` and the gateway bot at ``paranoim@<domain>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from slixmpp import JID
from slixmpp.jid import InvalidJID

__all__ = ["Domains", "InvalidJID", "parse_jid"]


@dataclass(frozen=True, slots=True)
class Domains:
    server: str = "localhost"

    @property
    def contacts(self) -> str:
        return f"p2p.{self.server}"

    @property
    def rooms(self) -> str:
        return f"rooms.{self.server}"

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
        if jid.domain == self.contacts and jid.local:
            return jid.local.lower()  # addresses are lowercase base32; nodeprep agrees
        return None


def parse_jid(value: str | None) -> JID | None:
    """A JID from an attribute, None when absent; raises InvalidJID when malformed."""
    if not value:
        return None
    return JID(value)
