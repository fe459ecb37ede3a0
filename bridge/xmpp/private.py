"""Private XML storage (XEP-0049) for the embedded server's accounts.

profanity asks for its bookmarks here (``storage:bookmarks``) at every login
and logs an error when the server does not answer; Gajim keeps its room
bookmarks here (XEP-0048, with ``autojoin``) when the server has no PEP, and
Pidgin's plugins keep small settings. What a client stores is bounded per
identity and kept in the data directory (``xmpp-private.json``, 0600, replaced
atomically), so that a client reconnecting after a daemon restart finds its
bookmarks, and so its room, again: in RAM they were lost with the restart and
Gajim no longer rejoined the public room. Deleting an identity deletes what
its clients stored.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from bridge.xmpp.errors import XmppError
from bridge.xmpp.stanzas import serialize

log = logging.getLogger(__name__)

PRIVATE_NS = "jabber:iq:private"
FILE_NAME = "xmpp-private.json"
VERSION = 1
MAX_BYTES = 64 * 1024  # per identity, all namespaces together
MAX_ITEMS = 32  # namespaces per identity
_RESERVED = frozenset({"jabber:client", "jabber:server", "jabber:component:accept", PRIVATE_NS})


class PrivateStorage:
    def __init__(self, data_dir: Path | str | None = None) -> None:
        self.path = Path(data_dir) / FILE_NAME if data_dir is not None else None
        self._data: dict[str, dict[str, tuple[ET.Element, int]]] = {}
        self._load()

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
        self._save()

    def forget(self, owner: str) -> None:
        """The identity was deleted: what its clients stored goes with it."""
        if self._data.pop(owner, None) is not None:
            self._save()

    # --- the file -------------------------------------------------------------------------

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            doc = json.loads(self.path.read_text())
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError("not a private storage file of this version")
            for owner, items in doc["identities"].items():
                mine: dict[str, tuple[ET.Element, int]] = {}
                for text in items:
                    if "<!" in text or "<?" in text:
                        raise ValueError("a DOCTYPE, comment or processing instruction")
                    el = ET.fromstring(text)  # noqa: S314 — our 0600 file, no DTD (above)
                    mine[self._key(el)] = (el, len(text.encode()))
                self._data[str(owner)] = mine
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ET.ParseError,
                XmppError) as exc:
            # Client settings, not keys: say so and start empty rather than refuse to run.
            log.warning("%s cannot be read (%s); clients' stored bookmarks start empty",
                        self.path, exc)
            self._data.clear()

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"version": VERSION,
               "identities": {owner: [serialize(el).decode() for el, _ in items.values()]
                              for owner, items in sorted(self._data.items())}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".private-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    os.fchmod(f.fileno(), 0o600)
                    json.dump(doc, f)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("could not save clients' private storage to %s: %s", self.path, exc)
