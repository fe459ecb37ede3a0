"""What the network sends an identity, to its XMPP clients: messages, receipts, chat states.

A ``MessageArrived`` goes to every available client of the identity (or waits in
the bounded offline queue, ``offline.py``) and is reported to the service as
delivered once a client has it: at the write for a client without XEP-0198, on
its acknowledgement for one with it (``sm.py``); so a persistent store shows an
undelivered message again after a restart, and a message a dropped connection
swallowed goes to the next session. Each envelope is shown once (``seen``); a receipt the
sender asked for is remembered until the client acknowledges the stanza
(``asked``), and our own messages' envelope ids map back to the client's message
ids (``sent``) so that an end-to-end receipt can name the stanza it confirms.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.api import ServiceAPI, archive_id
from bridge.events import ChatStateArrived, Event, MessageArrived, ReceiptArrived
from bridge.xmpp.acts import ARCHIVED_ACTS, act_message
from bridge.xmpp.jids import Domains
from bridge.xmpp.offline import OfflineQueues, notice
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_message
from bridge.xmpp.stanzas import chat_message

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

HINTS_NS = "urn:xmpp:hints"
CHATSTATES_NS = "http://jabber.org/protocol/chatstates"
REMEMBERED = 10_000  # message ids / envelope ids kept for receipts and dedup


class Bounded(OrderedDict[Any, Any]):
    """An insertion-ordered dict that forgets its oldest entries past ``limit``."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: object, value: object = None) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass(slots=True)
class _Shown:
    """One message written to ``waiting`` clients, until one confirms it or none can."""

    waiting: int
    settled: bool = False


def _sent_order(event: Event) -> tuple[int, int]:
    return (0, event.sent_at_ms) if isinstance(event, MessageArrived) else (1, 0)


class Delivery:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains) -> None:
        self.service = service
        self.sessions = sessions
        self.domains = domains
        self.offline = OfflineQueues()
        self.seen = Bounded()  # envelope ids already delivered (each arrives once)
        self.asked = Bounded()  # (owner, contact, stanza id) -> (envelope id, sender's id)
        self.sent = Bounded()  # envelope id -> client's message id, for receipts
        # XEP-0359 stanza-ids naming the message in the identity's XEP-0313 archive: on
        # the embedded listener (which serves the archive), not for a component's users
        self.stanza_ids = False

    def flush_offline(self, conn: Session) -> None:
        """What waited while no client was online, and how much could not wait."""
        assert conn.owner is not None
        held = self.offline.take(conn.owner.address)
        if held is None:
            return
        # A catch-up (reconciliation after a restart or an outage) hands envelopes over
        # in id order, not in the order they were written: give them in sent order
        # (sent_at_ms increases per sender; the sort is stable), receipts after.
        for event in sorted(held.events, key=_sent_order):
            if isinstance(event, MessageArrived):
                self.send_message(event, delayed=True)
            elif isinstance(event, ReceiptArrived):
                self.send_receipt(event)
        if held.dropped:
            msg = new_message()
            msg["to"] = conn.jid.full
            msg["from"] = self.domains.bot
            msg["type"] = "chat"
            msg["body"] = notice(held, self.offline)
            conn.send(msg)

    def send_message(self, event: MessageArrived, delayed: bool = False) -> None:
        if not delayed and event.envelope_id in self.seen:
            return
        targets = self.sessions.available(event.to)
        if not targets:
            if self.offline.hold(event.to, event):
                self.seen.remember(event.envelope_id)
            return  # not kept: never reported delivered, so a persistent store keeps it
        self.seen.remember(event.envelope_id)
        stanza_id = event.message_id or event.envelope_id.hex()[:32]
        if event.receipt_wanted:
            self.asked.remember((event.to, event.sender, stanza_id),
                                     (event.envelope_id, event.message_id))
        sender = self.domains.contact(event.sender)
        active = not delayed and self.service.chat_states_enabled()  # XEP-0085 §5.1
        delay = None
        if delayed:
            stamp = datetime.datetime.fromtimestamp(event.sent_at_ms / 1000, datetime.UTC)
            delay = (self.domains.server, stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        archived = archive_id(event.envelope_id) if self.stanza_ids else ""
        shown = _Shown(len(targets))

        def confirm(got: bool) -> None:
            self._confirmed(event, shown, got)

        if event.act is not None:
            if event.act.kind not in ARCHIVED_ACTS:
                archived = ""  # reactions and read markers are not archived
            for conn in targets:
                conn.write(act_message(conn.jid.full, sender, conn.bare, stanza_id, event,
                                       request_receipt=event.receipt_wanted, delay=delay,
                                       archived=(conn.bare, archived) if archived else None),
                           confirm)
            return
        for conn in targets:
            conn.write(chat_message(conn.jid.full, sender, stanza_id, event.text,
                                    request_receipt=event.receipt_wanted, active=active,
                                    delay=delay, oob=event.url,
                                    archived=(conn.bare, archived) if archived else None),
                       confirm)

    def _confirmed(self, event: MessageArrived, shown: _Shown, got: bool) -> None:
        """A client has the message (``got``), or a session ended without saying so.
        The first client that has it makes it shown for good (never shown again after a
        restart); if none of them does, it goes to the clients online now, or waits for
        the next one, as if it had just arrived."""
        if shown.settled:
            return
        if got:
            shown.settled = True
            self.service.delivered(event.envelope_id)
            return
        shown.waiting -= 1
        if shown.waiting <= 0:
            shown.settled = True
            self.send_message(event, delayed=True)

    def send_receipt(self, event: ReceiptArrived) -> None:
        ids = list(event.message_ids)
        for envelope_id in event.acked:
            msg_id = self.sent.pop(envelope_id, None)
            if msg_id and msg_id not in ids:
                ids.append(msg_id)
        if not ids:
            return
        targets = self.sessions.available(event.to)
        if not targets:
            self.offline.hold(event.to, ReceiptArrived(event.to, event.sender, (), tuple(ids)))
            return
        for conn in targets:
            for msg_id in ids:
                msg = new_message()
                msg["to"] = conn.jid.full
                msg["from"] = self.domains.contact(event.sender)
                msg["receipt"] = msg_id
                conn.send(msg)

    def send_chat_state(self, event: ChatStateArrived) -> None:
        """To the clients online now; a typing notification is never kept for later."""
        if not self.service.chat_states_enabled():
            return
        for conn in self.sessions.available(event.to):
            msg = new_message()
            msg["to"] = conn.jid.full
            msg["from"] = self.domains.contact(event.sender)
            msg["type"] = "chat"
            ET.SubElement(msg.xml, f"{{{CHATSTATES_NS}}}{event.state}")
            ET.SubElement(msg.xml, f"{{{HINTS_NS}}}no-store")  # XEP-0334: not for archives
            conn.send(msg)
