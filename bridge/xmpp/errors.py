"""The one place where exceptions become XMPP stanza errors.

Every ``on_*`` handler lets ``UserError``s (from ``ServiceAPI``) and
``XmppError``s (raised by the gateway itself) propagate; ``stanza_error_for``
turns any exception into (type, condition, text) and ``error_reply`` builds the
``type="error"`` answer. The text is what the person reads in their client,
so it is the ``UserError``'s own message; bugs get a generic text and a log
line, never a traceback on the wire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slixmpp import Presence
from slixmpp.jid import InvalidJID
from slixmpp.xmlstream import ElementBase

from bridge.core.errors import (
    BadAddressError,
    BadInviteError,
    OversizeError,
    PowCancelledError,
    UserError,
)
from bridge.xmpp.slixfix import new_iq, new_message

log = logging.getLogger(__name__)


class XmppError(Exception):
    """Raised inside a handler to answer with a specific stanza error."""

    def __init__(self, condition: str, text: str = "", etype: str = "cancel") -> None:
        super().__init__(text or condition)
        self.condition = condition
        self.text = text
        self.etype = etype


@dataclass(frozen=True, slots=True)
class StanzaError:
    etype: str  # cancel | modify | wait | auth | continue
    condition: str  # RFC 6120 §8.3.3 element name
    text: str


def stanza_error_for(exc: BaseException) -> StanzaError:
    # Order matters: the address and invite errors are also MalformedErrors.
    if isinstance(exc, XmppError):
        return StanzaError(exc.etype, exc.condition, exc.text)
    if isinstance(exc, BadAddressError):
        return StanzaError("modify", "jid-malformed", str(exc))
    if isinstance(exc, InvalidJID):  # a 'to' the JID rules refuse
        return StanzaError("modify", "jid-malformed", str(exc)[:200])
    if isinstance(exc, BadInviteError):
        return StanzaError("modify", "bad-request", str(exc))
    if isinstance(exc, OversizeError):
        return StanzaError("modify", "not-acceptable", str(exc))
    if isinstance(exc, PowCancelledError):
        return StanzaError("wait", "resource-constraint", str(exc))
    if isinstance(exc, UserError):
        return StanzaError("cancel", "undefined-condition", str(exc))
    log.error("unexpected error in the XMPP gateway", exc_info=exc)
    return StanzaError(
        "wait", "internal-server-error", "internal error in the ParanoIM daemon; see its log"
    )


def error_reply(kind: str, to: str, frm: str, ident: str, err: StanzaError,
                body: str = "") -> ElementBase:
    """A ``type="error"`` stanza of ``kind`` (message/presence/iq) answering ``ident``."""
    stanza: ElementBase
    if kind == "iq":
        stanza = new_iq("error", ident)
    elif kind == "message":
        stanza = new_message()
        if body:
            stanza["body"] = body
    else:
        stanza = Presence()
    stanza["type"] = "error"
    if ident:
        stanza["id"] = ident
    if to:
        stanza["to"] = to
    if frm:
        stanza["from"] = frm
    stanza["error"]["type"] = err.etype
    stanza["error"]["condition"] = err.condition
    if err.text:
        stanza["error"]["text"] = err.text
    return stanza


def error_reply_to(el_kind: str, el_attrs: dict[str, str], session_jid: str, exc: BaseException,
                   body: str = "") -> ElementBase:
    """Answer a stanza (by its attributes) that failed with ``exc``."""
    return error_reply(
        el_kind,
        to=session_jid,
        frm=el_attrs.get("to", ""),
        ident=el_attrs.get("id", ""),
        err=stanza_error_for(exc),
        body=body,
    )


__all__ = ["StanzaError", "XmppError", "error_reply", "error_reply_to", "stanza_error_for"]
