"""Private XML storage (XEP-0049) for the embedded server's accounts.

profanity asks for its bookmarks here (``storage:bookmarks``) at every login
and logs an error when the server does not answer; Gajim keeps its room
bookmarks here (XEP-0048, with ``autojoin``) when the server has no PEP, and
Pidgin's plugins keep small settings. What a client stores goes to the service,
which keeps it in the identity's record of the key file — bounded, encrypted
with the keys when they are, and deleted with the identity — so a client
reconnecting after a daemon restart finds its bookmarks, and so its room, again.
"""

from __future__ import annotations

import copy
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.xmpp.bookmarks import LEGACY_KEY
from bridge.xmpp.errors import XmppError
from bridge.xmpp.stanzas import serialize

if TYPE_CHECKING:
    from bridge.xmpp.bookmarks import Bookmarks
    from bridge.xmpp.sessions import Session

log = logging.getLogger(__name__)

PRIVATE_NS = "jabber:iq:private"
_RESERVED = frozenset({"jabber:client", "jabber:server", "jabber:component:accept", PRIVATE_NS})


class PrivateStorage:
    def __init__(self, service: ServiceAPI) -> None:
        self.service = service
        # Room bookmarks are kept once, as XEP-0402 PEP items (``bookmarks.py``), and
        # their private-storage form is made from and written into them.
        self.bookmarks: Bookmarks | None = None

    @staticmethod
    def _key(child: ET.Element) -> str:
        ns = child.tag[1:].split("}")[0] if child.tag.startswith("{") else ""
        if not ns or ns in _RESERVED:
            raise XmppError("not-acceptable", "private storage needs an element in its own "
                            "namespace", "modify")
        return child.tag

    @staticmethod
    def _parse(text: str) -> ET.Element | None:
        """A stored element; what we wrote ourselves, yet parsed as cautiously as input."""
        if "<!" in text or "<?" in text:
            return None
        try:
            return ET.fromstring(text)  # noqa: S314 - no DTD (above); from the key file
        except ET.ParseError:
            return None

    def get(self, owner: str, query: ET.Element) -> ET.Element:
        """The ``<query>`` answering a get: the stored element, or the asked one, empty."""
        children = list(query)
        if len(children) != 1:
            raise XmppError("bad-request", "ask for exactly one element", "modify")
        key = self._key(children[0])
        answer = ET.Element(f"{{{PRIVATE_NS}}}query")
        if key == LEGACY_KEY and self.bookmarks is not None:
            answer.append(self.bookmarks.legacy(owner))
            return answer
        text = self.service.client_storage(owner).get(key)
        stored = self._parse(text) if text is not None else None
        if text is not None and stored is None:
            log.warning("a stored %s of %s… could not be read; answered empty", key, owner[:8])
        answer.append(stored if stored is not None else ET.Element(key))
        return answer

    def set(self, owner: str, query: ET.Element, origin: Session | None = None) -> None:
        children = list(query)
        if not children:
            raise XmppError("bad-request", "nothing to store", "modify")
        items = {self._key(child): serialize(copy.deepcopy(child)).decode()
                 for child in children}
        if LEGACY_KEY in items and self.bookmarks is not None:
            del items[LEGACY_KEY]
            marks = next(c for c in children if c.tag == LEGACY_KEY)
            self.bookmarks.set_legacy(owner, marks, origin)
            if not items:
                return
        try:
            self.service.set_client_storage(owner, items)
        except UserError as exc:
            raise XmppError("resource-constraint", str(exc), "wait") from None
