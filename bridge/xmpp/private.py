"""Private XML storage (XEP-0049) for the embedded server's accounts.

profanity asks for its bookmarks here (``storage:bookmarks``) at every login
and logs an error when the server does not answer; Gajim and Pidgin's
plugins keep small settings here too. What a client stores stays in RAM for
the daemon's lifetime, like everything else by default, and is bounded per
identity.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

from bridge.xmpp.errors import XmppError
from bridge.xmpp.stanzas import serialize

PRIVATE_NS = "jabber:iq:private"
MAX_BYTES = 64 * 1024  # per identity, all namespaces together
MAX_ITEMS = 32  # namespaces per identity
_RESERVED = frozenset({"jabber:client", "jabber:server", "jabber:component:accept", PRIVATE_NS})


class PrivateStorage:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, tuple[ET.Element, int]]] = {}

    @staticmethod
    def _key(child: ET.Element) -> str:
        ns = child.tag[1:].split("}")[0] if child.tag.startswith("{") else ""
        if not ns or ns in _RESERVED:
            raise XmppError("not-acceptable", "private storage needs an element in its own "
                            "namespace", "modify")
        return child.tag

    def get(self, owner: str, query: ET.Element) -> ET.Element:
        """The ``<query>`` answering a get: the stored element, or the asked one, empty."""
        children = list(query)
        if len(children) != 1:
            raise XmppError("bad-request", "ask for exactly one element", "modify")
        key = self._key(children[0])
        stored = self._data.get(owner, {}).get(key)
        answer = ET.Element(f"{{{PRIVATE_NS}}}query")
        answer.append(copy.deepcopy(stored[0]) if stored else ET.Element(key))
        return answer

    def set(self, owner: str, query: ET.Element) -> None:
        children = list(query)
        if not children:
            raise XmppError("bad-request", "nothing to store", "modify")
        mine = dict(self._data.get(owner, {}))
        for child in children:
            mine[self._key(child)] = (copy.deepcopy(child), len(serialize(child)))
        if len(mine) > MAX_ITEMS or sum(size for _, size in mine.values()) > MAX_BYTES:
            raise XmppError("resource-constraint", "private storage is full for this identity",
                            "wait")
        self._data[owner] = mine
