"""What leaves besides messages: acts on earlier messages, and presences (opt-in).

Acts (corrections, reactions, retractions, read markers; docs/xmpp-mapping.md) go
to accepted contacts only, each as a direct message in the contact's session (or
version 1 without one), through the outbox like a chat message, so one never
overtakes the message it names. Each is an envelope with proof of work, so they
are throttled per contact (``ActQueue``): one leaves per ``ACT_INTERVAL``; a
second correction (or set of reactions) of the same message, or a later read
marker, replaces the one still waiting; past ``MAX_PENDING`` waiting the next is
refused with a UserError. Read markers leave only with ``[xmpp] markers`` on.

Presences (``[xmpp] presence``) go to every accepted contact when the identity's
availability changes, and again every ``PRESENCE_REFRESH`` (offline too, once a
client connected since the daemon started: a contact whose daemon restarted learns
it within that time, instead of showing us online as a contact never heard from):
each lives ``PRESENCE_TTL`` only, so a contact whose daemon stops hearing from us
shows us offline when the last one lapses. At most one per contact per
``PRESENCE_INTERVAL``, the latest winning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass

from bridge.contacts import ContactBook
from bridge.core.actqueue import ActQueue, Send
from bridge.core.acts import TEXT_ACTS, Act, ActKind, Presence
from bridge.core.errors import RemoteProtocolError, UserError
from bridge.events import ContactsChanged, ContactState, Event
from bridge.identities import IdentityBook
from bridge.outbox import Outbox
from bridge.pacing import pace
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

ACT_INTERVAL = 1.0  # seconds between two acts to one contact
PRESENCE_INTERVAL = 5.0  # seconds between two presences to one contact
PRESENCE_TTL = 10 * 60  # a presence's life in the network (and on the contact's screen)
PRESENCE_REFRESH = 7 * 60  # sent again while it holds, before the last one lapses


@dataclass(frozen=True, slots=True)
class _Out:
    act: Act
    text: str
    message_id: str
    receipt: bool


Key = tuple[str, str]  # (owner, contact)


class ActSender:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, outbox: Outbox,
                 tasks: TaskSet, *, markers: bool = False, presence: bool = False) -> None:
        self.ids = ids
        self.contacts = contacts
        self.outbox = outbox
        self.tasks = tasks
        self.markers = markers
        self.presence = presence
        self.acts = ActQueue[Key, _Out](ACT_INTERVAL)
        self.presences = ActQueue[Key, Presence](PRESENCE_INTERVAL)
        self.current: dict[str, Presence] = {}  # owner -> what its contacts last learnt
        self._told: dict[Key, Presence] = {}  # what each contact was last offered
        self._refreshing = False

    # --- acts -----------------------------------------------------------------------------

    def send_act(self, owner: str, to: str, act: Act, text: str = "", message_id: str = "",
                 receipt: bool = False) -> bool:
        """Queue an act for an accepted contact; False when it is not sent (a read
        marker with markers off). UserError: not an accepted contact, too many waiting,
        or text where the act carries none."""
        if act.kind is ActKind.DISPLAYED and not self.markers:
            return False
        if self.contacts.accepted(owner, to) is None:
            raise UserError("corrections, reactions, retractions and read markers go to "
                            "accepted contacts only")
        if act.kind in TEXT_ACTS and not text:
            raise UserError(f"a {act.kind.name.lower()} needs text")
        if act.kind not in TEXT_ACTS:
            text, receipt = "", False
        slot: Hashable = ((act.kind, "") if act.kind is ActKind.DISPLAYED
                          else (act.kind, act.ref))
        key = (owner, to)
        if self.acts.offer(key, slot, _Out(act, text, message_id, receipt), time.monotonic()):
            self.tasks.spawn(self._flush_acts(key), name="acts")
        return True

    async def _flush_acts(self, key: Key) -> None:
        async def send(step: Send[_Out]) -> None:
            out = step.item
            if self.contacts.accepted(*key) is None:
                return  # removed or blocked while it waited
            try:
                await self.outbox.send_message(*key, out.text, receipt=out.receipt,
                                               message_id=out.message_id, act=out.act)
            except (UserError, RemoteProtocolError) as exc:
                log.info("%s to %s… not sent: %s", out.act.kind.name.lower(), key[1][:8], exc)

        try:
            await pace(lambda now: self.acts.step(key, now), send)
        finally:
            self.acts.stopped(key)

    # --- presence -------------------------------------------------------------------------

    def set_presence(self, owner: str, presence: Presence) -> None:
        """The identity's availability (what its clients say, all together); sent to its
        accepted contacts if it changed, and refreshed while it holds."""
        if not self.presence:
            return
        if self.current.get(owner) == presence:
            return
        self.current[owner] = presence
        self._to_contacts(owner, presence)
        if not self._refreshing:
            self._refreshing = True
            self.tasks.spawn(self._refresh(), name="presence refresh")

    def on_event(self, event: Event) -> None:
        """A contact just accepted learns our presence now, not at the next refresh."""
        if (self.presence and isinstance(event, ContactsChanged) and event.contact is not None
                and event.contact.state is ContactState.ACCEPTED):
            presence = self.current.get(event.owner)
            if presence is not None:
                self._offer((event.owner, event.contact.address), presence, again=False)

    def _to_contacts(self, owner: str, presence: Presence) -> None:
        try:
            rec = self.ids.rec(owner)
        except UserError:
            self.current.pop(owner, None)  # the identity was deleted
            self._told = {k: v for k, v in self._told.items() if k[0] != owner}
            return
        for c in rec.contacts:
            if self.contacts.accepted(owner, c.address) is not None:
                self._offer((owner, c.address), presence, again=True)

    def _offer(self, key: Key, presence: Presence, *, again: bool) -> None:
        """Queue ``presence`` for one contact; unless ``again``, only if it is news."""
        if not again and self._told.get(key) == presence:
            return
        self._told[key] = presence
        try:
            if self.presences.offer(key, "presence", presence, time.monotonic()):
                self.tasks.spawn(self._flush_presences(key), name="presence")
        except UserError as exc:
            log.debug("presence to %s… not queued: %s", key[1][:8], exc)

    async def _refresh(self) -> None:
        try:
            while True:
                await asyncio.sleep(PRESENCE_REFRESH)
                for owner, presence in list(self.current.items()):
                    self._to_contacts(owner, presence)
        finally:
            self._refreshing = False

    async def _flush_presences(self, key: Key) -> None:
        async def send(step: Send[Presence]) -> None:
            try:
                await self.outbox.send_presence(*key, step.item, PRESENCE_TTL)
            except (UserError, RemoteProtocolError) as exc:
                log.debug("presence to %s… not sent: %s", key[1][:8], exc)

        try:
            await pace(lambda now: self.presences.step(key, now), send)
        finally:
            self.presences.stopped(key)
