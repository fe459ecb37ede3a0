"""Corrections, reactions, retractions, replies and read markers, both ways.

From a client: ``client_act`` reads the act a message stanza carries (XEP-0308
<replace/>, XEP-0444 <reactions/>, XEP-0424 <retract/>, XEP-0333 <displayed/>),
bounded before anything is queued: a message id over 64 bytes, more than 16
reactions or one over 32 bytes is a ``not-acceptable`` stanza error, never cut
silently. ``reply_of`` reads an XEP-0461 <reply/> (a reply is a message: it goes
with ``send_message``). Acts name the message by its XMPP id, the one the client
gave it (or, for a message from the network, the id its clients were shown).

To a client: ``act_message`` writes the stanza for a ``MessageArrived`` that carries
an act, the same elements naming the same id.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from bridge.api import MAX_REACTION, MAX_REACTIONS, Act, ActKind, ServiceAPI
from bridge.core.errors import UserError
from bridge.events import MessageArrived
from bridge.xmpp.errors import XmppError, error_reply_to
from bridge.xmpp.stanzas import escape

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

CORRECT_NS = "urn:xmpp:message-correct:0"
REACTIONS_NS = "urn:xmpp:reactions:0"
RETRACT_NS = "urn:xmpp:message-retract:1"
# XEP-0424 before 0.4 (some clients still send it): a retraction fastened to the message
FASTEN_NS = "urn:xmpp:fasten:0"
RETRACT_OLD_NS = "urn:xmpp:message-retract:0"
MARKERS_NS = "urn:xmpp:chat-markers:0"
REPLY_NS = "urn:xmpp:reply:0"
FALLBACK_NS = "urn:xmpp:fallback:0"
HINTS_NS = "urn:xmpp:hints"
# acts kept in the archive (XEP-0313) as stanzas of their own; reactions and read
# markers are not (a MAM client sees the message without them)
ARCHIVED_ACTS = (ActKind.CORRECTION, ActKind.REPLY, ActKind.RETRACTION)
MAX_ID = 64  # bytes of a message id an act names
RETRACTED = ("This person attempted to retract a previous message, but it's unsupported "
             "by your client.")  # the XEP-0424 fallback body


def contact_features(markers: bool) -> list[str]:
    """What a contact's disco#info announces, so clients offer these acts."""
    return [CORRECT_NS, REACTIONS_NS, RETRACT_NS, REPLY_NS] + ([MARKERS_NS] if markers else [])


@dataclass(frozen=True, slots=True)
class ClientAct:
    act: Act
    text: str  # a correction's text; empty for the others


def _ref(el: ET.Element, what: str) -> str:
    ref = el.get("id", "")
    if not ref:
        raise XmppError("bad-request", f"a {what} names no message id", "modify")
    if len(ref.encode()) > MAX_ID:
        raise XmppError("not-acceptable", f"a {what} names a message id of at most "
                        f"{MAX_ID} bytes", "modify")
    return ref


def client_act(el: ET.Element, body: str | None) -> ClientAct | None:
    """The act a client's message stanza carries, if any; XmppError if it is malformed
    or past the bounds."""
    replace = el.find(f"{{{CORRECT_NS}}}replace")
    if replace is not None:
        if not body:
            raise XmppError("bad-request", "a correction carries the corrected text", "modify")
        return ClientAct(Act(ActKind.CORRECTION, _ref(replace, "correction")), body)
    reactions = el.find(f"{{{REACTIONS_NS}}}reactions")
    if reactions is not None:
        ref = _ref(reactions, "reaction")
        found = [(r.text or "").strip() for r in reactions.findall(f"{{{REACTIONS_NS}}}reaction")]
        found = list(dict.fromkeys(r for r in found if r))
        if len(found) > MAX_REACTIONS:
            raise XmppError("not-acceptable", f"at most {MAX_REACTIONS} reactions to one "
                            "message", "modify")
        if any(len(r.encode()) > MAX_REACTION for r in found):
            raise XmppError("not-acceptable", f"a reaction is at most {MAX_REACTION} bytes "
                            "(an emoji)", "modify")
        return ClientAct(Act(ActKind.REACTION, ref, tuple(found)), "")
    retract = el.find(f"{{{RETRACT_NS}}}retract")
    if retract is not None:
        return ClientAct(Act(ActKind.RETRACTION, _ref(retract, "retraction")), "")
    fastened = el.find(f"{{{FASTEN_NS}}}apply-to")
    if fastened is not None and fastened.find(f"{{{RETRACT_OLD_NS}}}retract") is not None:
        return ClientAct(Act(ActKind.RETRACTION, _ref(fastened, "retraction")), "")
    displayed = el.find(f"{{{MARKERS_NS}}}displayed")
    if displayed is not None:
        return ClientAct(Act(ActKind.DISPLAYED, _ref(displayed, "read marker")), "")
    return None


class ReplyArgs(TypedDict, total=False):
    reply_to: str
    reply_to_own: bool


def reply_of(el: ET.Element, own_bare: str) -> ReplyArgs:
    """``send_message`` arguments for an XEP-0461 reply (none for another message)."""
    reply = el.find(f"{{{REPLY_NS}}}reply")
    if reply is None:
        return {}
    ref = _ref(reply, "reply")
    author = reply.get("to", "").split("/", 1)[0]
    return {"reply_to": ref, "reply_to_own": author == own_bare}


class ClientActs:
    """A client's acts to a contact: queued with the service (which throttles them),
    copied to the identity's other clients (XEP-0280); refused ones answered with a
    stanza error, read markers kept local unless markers are on."""

    def __init__(self, service: ServiceAPI, carbon: Callable[[Session, ET.Element], None]) -> None:
        self.service = service
        self.carbon = carbon

    def on_message(self, conn: Session, el: ET.Element, address: str, body: str | None) -> bool:
        """True when the stanza was an act (handled here); XmppError if malformed."""
        found = client_act(el, body)
        if found is None:
            return False
        assert conn.owner is not None
        if found.act.kind is ActKind.DISPLAYED and not self.service.markers_enabled():
            return True  # read markers stay local unless turned on
        msg_id = el.get("id", "")
        wants_receipt = (bool(msg_id) and found.act.kind is ActKind.CORRECTION
                         and el.find("{urn:xmpp:receipts}request") is not None)
        try:
            self.service.send_act(conn.owner.address, address, found.act, found.text,
                                  message_id=msg_id[:MAX_ID], receipt=wants_receipt)
        except UserError as exc:
            conn.send(error_reply_to("message", dict(el.attrib), conn.jid.full, exc))
            return True
        self.carbon(conn, el)
        return True


def quoted_prefix(text: str) -> int:
    """How many characters (code points) of a reply's text are its quote: the lines
    starting with ">" before the first that does not. XEP-0461 clients put the message
    they answer there, for clients without replies; with the XEP-0428 fallback element
    naming that range, clients that have them hide it."""
    end = 0
    while text.startswith(">", end):
        newline = text.find("\n", end)
        if newline < 0:
            return 0  # all quote: nothing of the reply's own would be left
        end = newline + 1
    return end if end < len(text) else 0


def add_archived_act(msg: ET.Element, act: str, *, own: str, contact: str,
                     body: str = "") -> None:
    """The element of an archived act (``Entry.act``: "correction ID", "retraction ID",
    "reply ID me|peer") in a message MAM gives back."""
    kind, _, rest = act.partition(" ")
    ref, _, author = rest.partition(" ")
    if kind == "correction":
        ET.SubElement(msg, f"{{{CORRECT_NS}}}replace", id=ref)
    elif kind == "retraction":
        ET.SubElement(msg, f"{{{RETRACT_NS}}}retract", id=ref)
        ET.SubElement(msg, f"{{{FALLBACK_NS}}}fallback", {"for": RETRACT_NS})
    elif kind == "reply":
        ET.SubElement(msg, f"{{{REPLY_NS}}}reply", to=own if author == "me" else contact,
                      id=ref)
        quoted = quoted_prefix(body)
        if quoted:
            fallback = ET.SubElement(msg, f"{{{FALLBACK_NS}}}fallback", {"for": REPLY_NS})
            ET.SubElement(fallback, f"{{{FALLBACK_NS}}}body", start="0", end=str(quoted))


def act_message(to: str, sender: str, own_bare: str, stanza_id: str, event: MessageArrived,
                *, request_receipt: bool = False, delay: tuple[str, str] | None = None,
                archived: tuple[str, str] | None = None) -> bytes:
    """The stanza a client gets for an act from the network (``event.act`` is set)."""
    act = event.act
    assert act is not None
    ref = escape(act.ref)
    parts = [f'<message to="{escape(to)}" from="{escape(sender)}" type="chat" '
             f'id="{escape(stanza_id)}">']
    if act.kind is ActKind.CORRECTION:
        parts.append(f"<body>{escape(event.text)}</body>")
        parts.append(f'<replace xmlns="{CORRECT_NS}" id="{ref}" />')
    elif act.kind is ActKind.REPLY:
        author = own_bare if act.to_recipient else sender
        parts.append(f"<body>{escape(event.text)}</body>")
        parts.append(f'<reply xmlns="{REPLY_NS}" to="{escape(author)}" id="{ref}" />')
        quoted = quoted_prefix(event.text)
        if quoted:
            parts.append(f'<fallback xmlns="{FALLBACK_NS}" for="{REPLY_NS}">'
                         f'<body start="0" end="{quoted}" /></fallback>')
    elif act.kind is ActKind.REACTION:
        parts.append(f'<reactions xmlns="{REACTIONS_NS}" id="{ref}">')
        parts.extend(f"<reaction>{escape(r)}</reaction>" for r in act.reactions)
        parts.append(f'</reactions><store xmlns="{HINTS_NS}" />')
    elif act.kind is ActKind.RETRACTION:
        parts.append(f"<body>{escape(RETRACTED)}</body>")
        parts.append(f'<retract xmlns="{RETRACT_NS}" id="{ref}" />')
        parts.append(f'<apply-to xmlns="{FASTEN_NS}" id="{ref}">'
                     f'<retract xmlns="{RETRACT_OLD_NS}" /></apply-to>')
        parts.append(f'<fallback xmlns="{FALLBACK_NS}" for="{RETRACT_NS}" />')
        parts.append(f'<store xmlns="{HINTS_NS}" />')
    else:
        parts.append(f'<displayed xmlns="{MARKERS_NS}" id="{ref}" />')
    if request_receipt:
        parts.append('<request xmlns="urn:xmpp:receipts" />')
    if delay is not None:
        parts.append(f'<delay xmlns="urn:xmpp:delay" from="{escape(delay[0])}" '
                     f'stamp="{escape(delay[1])}" />')
    if archived is not None:
        parts.append(f'<stanza-id xmlns="urn:xmpp:sid:0" by="{escape(archived[0])}" '
                     f'id="{escape(archived[1])}" />')
    parts.append("</message>")
    return "".join(parts).encode("utf-8")
