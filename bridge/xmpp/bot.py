"""The gateway bot at ``paranoim@<domain>``: a chat window that answers commands.

For people who would rather type than open the web UI: ``help``, ``status``,
``invite``, ``add <address-or-link> [petname]``, ``contact <who>`` and
``newsession <who>``. Replies are plain text;
a ``UserError`` becomes its own message, which already says what to do.
"""

from __future__ import annotations

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.events import ContactInfo, IdentityInfo
from bridge.xmpp.jids import Domains

HELP = """ParanoIM gateway commands:
  help — this text
  status — the P2P node's health
  invite — your invitation link, to give to someone out of band
  add <address-or-invite-link> [petname] — add a contact
  contact <petname-or-address> — how messages to a contact are protected
  newsession <petname-or-address> — start a new end-to-end session with a contact
    (when they lost theirs, or to start afresh; their daemon tells them)
Contacts are <address>@{contacts}; the public room is {room}."""


class Bot:
    def __init__(self, service: ServiceAPI, domains: Domains) -> None:
        self.service = service
        self.domains = domains

    def answer(self, owner: IdentityInfo, text: str) -> str:
        words = text.strip().split()
        command = words[0].lower().lstrip("/!") if words else "help"
        try:
            if command == "status":
                return self._status()
            if command == "invite":
                link = self.service.invite_link(owner.address)
                return f"Your invitation link (give it to a contact out of band):\n{link}"
            if command == "add":
                return self._add(owner, words[1:])
            if command == "contact":
                return self._contact(owner, " ".join(words[1:]))
            if command == "newsession":
                c = self._find(owner, " ".join(words[1:]))
                self.service.new_session(owner.address, c.address)
                return (f"A new session with {c.petname or c.fingerprint} is starting; their "
                        "daemon will tell them.")
        except UserError as err:
            return f"Sorry: {err}"
        prefix = "" if command == "help" else f"Unknown command {command!r}.\n"
        return prefix + HELP.format(contacts=self.domains.contacts, room=self.domains.public_room)

    def _status(self) -> str:
        h = self.service.health()
        # Only links past the handshake count: the list also holds links being set
        # up and configured peers that are not linked (or no P2P node at all).
        connected = sum(1 for p in h.peers if p.get("state") == "active")
        waiting = len(h.peers) - connected
        lines = [
            f"peers connected: {connected}" + (f" ({waiting} not connected)" if waiting else ""),
            f"stored envelopes: {h.stored_envelopes} ({h.stored_bytes} bytes)",
            f"proof-of-work difficulty: {h.difficulty_bits} bits",
            f"storage: {h.storage}, Tor: {h.tor}",
        ]
        if h.recent_errors:
            lines.append("recent errors: " + "; ".join(h.recent_errors[-3:]))
        return "\n".join(lines)

    def _add(self, owner: IdentityInfo, args: list[str]) -> str:
        if not args:
            return "Usage: add <address-or-invite-link> [petname]"
        contact = self.service.add_contact(owner.address, args[0], " ".join(args[1:]))
        return (
            f"Added {contact.petname} as {self.domains.contact(contact.address)} "
            f"(fingerprint {contact.fingerprint})."
        )

    def _find(self, owner: IdentityInfo, who: str) -> ContactInfo:
        """A contact by petname (any case), address, address prefix or contact JID."""
        who = who.strip()
        if not who:
            raise UserError("say which contact: a petname or an address")
        address = who.split("@", 1)[0].lower()
        contacts = self.service.contacts(owner.address)
        found = [c for c in contacts if c.petname.lower() == who.lower()] or \
            [c for c in contacts if len(address) >= 4 and c.address.startswith(address)]
        if not found:
            raise UserError(f"no contact called {who!r}")
        if len(found) > 1:
            raise UserError(f"{len(found)} contacts match {who!r}: give more of the address")
        return found[0]

    def _contact(self, owner: IdentityInfo, who: str) -> str:
        c = self._find(owner, who)
        lines = [f"{c.petname or '(no name)'} — {self.domains.contact(c.address)}",
                 f"fingerprint {c.fingerprint}, {c.state.value}"]
        if c.session:
            lines.append(c.session)
        if c.session_note:
            lines.append(f"Last: {c.session_note}")
        return "\n".join(lines)
