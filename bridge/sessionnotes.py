"""What the person is told about a contact's sessions, and what the daemon does when
a contact writes in a session it no longer has (docs/sessions.md §10, "We lost ours").

- **Reset**: the contact started a new session (lost theirs, moved their identity):
  the person is told, because it is also what an impostor with a stolen identity key
  would cause.
- **Lost keys**: messages whose keys the bounds gave up can no longer be opened.
- **Lost session**: an envelope under the pair tag *to* us opens in none of our
  sessions with that contact. Nothing of ours comes back under that tag, so it is the
  contact writing in a session this daemon lost (its key file is an older copy, or
  the identity was imported) — or someone copying the tag to make junk. A new session
  is started, so the contact's next messages open; but only if no message of theirs
  that opened expires later than this one (a conversation that still works is not
  reset by junk or by a straggler: the outer expiry says which was sent later), and
  at most once per ``EVERY`` seconds per contact, so junk costs at most one handshake
  a day.

Each note is kept with the contact (the web UI shows it) and said by the bot, once
the key file holds what caused it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from bridge.contacts import ACCEPTED, ContactBook
from bridge.core.errors import UserError
from bridge.events import ContactsChanged, EventBus, SessionNotice
from bridge.identities import IdentityBook
from bridge.store.keystore import ContactRecord

EVERY: Final = 86_400


class SessionNotes:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, bus: EventBus,
                 clock: Callable[[], int],
                 after_durable: Callable[[Callable[[], None]], None]) -> None:
        self.ids, self.contacts, self.bus, self.clock = ids, contacts, bus, clock
        self.after_durable = after_durable
        # Starts a new session with a contact, in the background; UserError if it
        # cannot (set by the service; None: sessions off, nothing is started).
        self.restart: Callable[[str, str], None] | None = None
        # Answers a contact's new session with a text-free message in it, so their
        # next messages need no handshake block (set by the service; None: nothing).
        self.confirm_soon: Callable[[str, str], None] | None = None
        self._heard: dict[tuple[str, str], int] = {}  # (owner, contact) -> latest expiry opened
        self._restarted: dict[tuple[str, str], int] = {}  # -> last automatic new session

    def opened(self, owner: str, sender: str, expiry: int) -> None:
        """A message from ``sender`` (its envelope expiring at ``expiry``) opened."""
        key = (owner, sender)
        self._heard[key] = max(self._heard.get(key, 0), expiry)

    def forget(self, owner: str, contact: str | None = None) -> None:
        """Forget a contact (or, with None, all of an identity's)."""
        for table in (self._heard, self._restarted):
            for key in [k for k in table if k[0] == owner and contact in (None, k[1])]:
                del table[key]

    def confirm(self, owner: str, contact: str) -> None:
        """An accepted contact's session became the one we send in: answer it now
        rather than with the person's next message, so every message the contact
        writes until then does not carry the 1,194-byte handshake block (a larger
        envelope, more proof of work)."""
        if self.confirm_soon is not None:
            self.confirm_soon(owner, contact)

    def reset(self, owner: str, c: ContactRecord) -> None:
        name, when = _name(c), self._when()
        self.tell(owner, c, f"{name} started a new end-to-end session ({when}). Their daemon "
                  "lost its session with you, or they moved their identity to another "
                  "device; if they did not say so, compare fingerprints with them. Messages "
                  "you sent just before may not have reached them.")

    def dropped(self, owner: str, c: ContactRecord, count: int) -> None:
        self.tell(owner, c, f"{count} of {_name(c)}'s messages can no longer be opened "
                  f"({self._when()}): they came too late or too far out of order, and "
                  "their keys were given up.")

    def lost(self, owner: str, contact: str, expiry: int) -> bool:
        """A message under the pair tag to us (expiring at ``expiry``) opened in none
        of our sessions with ``contact``: start a new session if the rule allows;
        True if one was started."""
        now = self.clock()
        key = (owner, contact)
        c = self.contacts.find(self.ids.rec(owner), contact)
        if c is None or c.state != ACCEPTED or self.restart is None:
            return False
        if expiry < self._heard.get(key, 0):
            return False  # a later message of theirs opened: a straggler, or junk
        if now - self._restarted.get(key, now - EVERY) < EVERY:
            return False
        self._restarted[key] = now
        name = _name(c)
        lost = (f"A message from {name} could not be opened ({self._when()}): it was sent in "
                "a session this daemon no longer has (its key file is an older copy, or "
                "the identity was imported). ")
        try:
            self.restart(owner, contact)
        except UserError as exc:
            self.tell(owner, c, lost + f"No new session could start: {exc}. Your next "
                      "message to them starts one once their keys are here.")
            return False
        self.tell(owner, c, lost + f"A new session was started: {name}'s daemon tells them, "
                  "and what they send next will open. Ask them to send again what they sent "
                  "before it.")
        return True

    def tell(self, owner: str, c: ContactRecord, text: str) -> None:
        """Keep ``text`` with the contact and say it (bot, web UI) once durable."""
        c.session_note = text
        self.ids.save_soon()
        info = self.contacts.info(owner, c)

        def say() -> None:
            self.bus.emit(SessionNotice(owner, c.address, text))
            self.bus.emit(ContactsChanged(owner, info))
        self.after_durable(say)

    def _when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.clock()))


def _name(c: ContactRecord) -> str:
    return c.petname or c.address[:8]
