"""Real availability, both ways, when the person turned it on (``[xmpp] presence``).

Out: the identity's availability is what its most available client says (chat >
available > away > xa > dnd; "unavailable" when none is connected), given to the
service whenever it changes; the service sends it to accepted contacts.

In: a contact's ``PresenceArrived`` becomes a presence from the contact's JID (with
<show/> and <status/>) to every available client of the identity; at login and on
a probe the roster asks ``contact_presence`` for the last one. A contact never
heard from shows available, as with presence off.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from slixmpp import Presence

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.events import PresenceArrived
from bridge.xmpp.jids import Domains
from bridge.xmpp.sessions import Sessions

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

_C = "{jabber:client}"
RANK = ("chat", "", "away", "xa", "dnd")  # most available first
MAX_STATUS = 64  # bytes of status text sent on


def shown(presence: Presence, event: PresenceArrived) -> Presence:
    """``presence`` (from the contact's JID) saying what ``event`` says."""
    if event.show == "unavailable":
        presence["type"] = "unavailable"
        return presence
    if event.show:
        presence["show"] = event.show
    if event.status:
        presence["status"] = event.status
    return presence


class PresenceFace:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains,
                 build: Callable[[Session, str, str], Presence]) -> None:
        self.build = build  # the roster's presence: (client, contact JID, type) -> stanza
        self.service = service
        self.sessions = sessions
        self.domains = domains
        self._shows: dict[Session, tuple[str, str]] = {}  # an available client's show, status

    def own(self, conn: Session, el: ET.Element | None) -> None:
        """A client of the identity changed its presence (``el`` None: it left)."""
        if not self.service.presence_enabled() or conn.owner is None:
            return
        if el is None or el.get("type", "") == "unavailable":
            self._shows.pop(conn, None)
        else:
            show = (el.findtext(_C + "show") or "").strip()
            status = (el.findtext(_C + "status") or "").strip()
            raw = status.encode()[:MAX_STATUS].decode("utf-8", "ignore")
            self._shows[conn] = (show if show in RANK else "", raw)
        owner = conn.owner.address
        live = [self._shows[s] for s in self.sessions.of(owner) if s in self._shows]
        best = min(live, key=lambda v: RANK.index(v[0])) if live else ("unavailable", "")
        with contextlib.suppress(UserError):  # the identity went away meanwhile
            self.service.set_presence(owner, *best)

    def send_arrived(self, event: PresenceArrived) -> None:
        frm = self.domains.contact(event.sender)
        for conn in self.sessions.available(event.to):
            conn.send(shown(self.build(conn, frm, ""), event))
