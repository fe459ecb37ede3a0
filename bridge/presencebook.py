"""Contacts' presences as they arrive (opt-in, ``[xmpp] presence``): last state wins.

A presence is shown only with presence on here, only from an accepted contact,
and only if sent after the one shown before (gossip may reorder). Each lives as
long as its envelope: when the last one from a contact lapses with no newer one
(their daemon stopped, or they turned presence off), the contact shows
"unavailable". A contact never heard from keeps today's "always online": the
faces ask ``current`` and get None for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.core.acts import Presence, Show
from bridge.events import EventBus, PresenceArrived

MAX_KEPT = 100_000  # (identity, contact) pairs with a presence remembered


def show_name(show: Show) -> str:
    """The RFC 6121 <show/> text ("" for plain available, "unavailable" for offline)."""
    return "" if show is Show.AVAILABLE else show.name.lower()


class PresenceBook:
    def __init__(self, bus: EventBus, clock: Callable[[], int],
                 spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None) -> None:
        self.bus = bus
        self.clock = clock
        self.spawn = spawn
        self._last: dict[tuple[str, str], tuple[PresenceArrived, int]] = {}  # -> (it, expiry)
        self._lapsing: set[tuple[str, str]] = set()  # contacts with a lapse watch running

    def arrived(self, to: str, sender: str, presence: Presence, sent_at_ms: int,
                expiry: int) -> None:
        key = (to, sender)
        last = self._last.get(key)
        if last is not None and sent_at_ms <= last[0].sent_at_ms:
            return
        if expiry <= self.clock():
            return
        event = PresenceArrived(to, sender, show_name(presence.show), presence.status,
                                sent_at_ms)
        if key not in self._last and len(self._last) >= MAX_KEPT:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (event, expiry)
        self.bus.emit(event)
        if (self.spawn is not None and presence.show is not Show.UNAVAILABLE
                and key not in self._lapsing):
            self._lapsing.add(key)
            self.spawn(self._lapse(key))

    async def _lapse(self, key: tuple[str, str]) -> None:
        """One watch per contact: when the presence shown lapses with no newer one, the
        contact goes unavailable."""
        try:
            while True:
                last = self._last.get(key)
                if last is None or last[0].show == "unavailable":
                    return  # the contact went, or said so itself
                event, expiry = last
                if expiry > self.clock():
                    await asyncio.sleep(expiry - self.clock())
                    continue
                gone = PresenceArrived(event.to, event.sender, "unavailable", "",
                                       event.sent_at_ms)
                self._last[key] = (gone, expiry)
                self.bus.emit(gone)
                return
        finally:
            self._lapsing.discard(key)

    def current(self, to: str, sender: str) -> PresenceArrived | None:
        """The contact's presence now: None if never heard (shown as today)."""
        last = self._last.get((to, sender))
        if last is None:
            return None
        event, expiry = last
        if expiry <= self.clock() and event.show != "unavailable":
            return PresenceArrived(to, sender, "unavailable", "", event.sent_at_ms)
        return event

    def forget(self, to: str, sender: str | None = None) -> None:
        """A contact removed or blocked (``sender``), or an identity deleted."""
        if sender is not None:
            self._last.pop((to, sender), None)
        else:
            self._last = {k: v for k, v in self._last.items() if k[0] != to}
