"""The history room: what each identity said and was shown, for XEP-0313 (MAM)
and anyone else who asks (``Service.archive_query``).

Every chat message shown to an identity, every message it sent, and the room
messages it saw go into a bounded per-identity archive (``core.archive``). With
``--storage sqlite`` the archive is also kept, sealed, in ``archive.db``
(``store.archive``); with the RAM store it dies with the daemon.

An arrival's archive id comes from its envelope id, so a message shown twice
(a restart before a client confirmed it) is archived once; a sent message gets
one derived the same way from the envelope it went out in. Peers are addresses (a
contact's) or room names; the XMPP side turns them into JIDs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from bridge.core.acts import Act, ActKind
from bridge.core.archive import Archive, ArchiveError, Entry, Page, Query, archive_id
from bridge.events import Event, IdentitiesChanged, MessageArrived, RoomMessageArrived
from bridge.store.archive import ArchiveFile

log = logging.getLogger(__name__)

__all__ = ["History", "archive_id", "archived_act"]


def archived_act(act: Act | None, *, mine: bool) -> str:
    """How the archive names an act (``Entry.act``); "" for none, and for the acts it
    does not keep (reactions, read markers). ``mine``: a reply to a message the
    archive's identity wrote."""
    if act is None or act.kind in (ActKind.REACTION, ActKind.DISPLAYED):
        return ""
    if act.kind is ActKind.REPLY:
        return f"reply {act.ref} {'me' if mine else 'peer'}"
    return f"{act.kind.name.lower()} {act.ref}"


class History:
    def __init__(self, subscribe: Callable[[Callable[[Event], None]], object],
                 clock_ms: Callable[[], int], *, file: ArchiveFile | None = None,
                 archive: Archive | None = None) -> None:
        self.archive = archive if archive is not None else Archive()
        self.file = file
        self.clock_ms = clock_ms
        subscribe(self._on)

    def load(self, owners: list[str]) -> None:
        if self.file is not None:
            read = self.file.load(self.archive, owners)
            log.debug("archive: %d messages read", read)

    def _add(self, owner: str, entry: Entry) -> None:
        try:
            evicted = self.archive.add(owner, entry)
        except ArchiveError:
            return  # shown again after a restart: archived the first time
        if self.file is not None:
            self.file.add(owner, entry)
            if evicted:
                self.file.delete(owner, evicted)

    def _on(self, event: Event) -> None:
        if isinstance(event, MessageArrived):
            act = archived_act(event.act, mine=event.act is not None and event.act.to_recipient)
            if event.act is not None and not act:
                return  # reactions and read markers are not archived
            self._add(event.to, Entry(archive_id(event.envelope_id), self.clock_ms(),
                                      event.sender, False, event.text,
                                      origin_id=event.message_id, act=act))
        elif isinstance(event, RoomMessageArrived):
            self._add(event.to, Entry(archive_id(event.envelope_id), self.clock_ms(),
                                      event.room, event.sender == event.to, event.text,
                                      groupchat=True, nick=event.sender_nick))
        elif isinstance(event, IdentitiesChanged) and event.removed:
            self.archive.forget(event.removed)
            if self.file is not None:
                self.file.forget(event.removed)

    def sent(self, owner: str, to: str, text: str, message_id: str = "",
             envelope_id: bytes = b"", act: str = "") -> str:
        """Archive a chat message ``owner`` sends (or a correction, retraction, reply:
        ``act``, see ``Entry``); its archive id: the one its envelope gives (so the
        XMPP side, which learns the envelope id, can name it in the carbon copies it
        sends), or a random one without an envelope."""
        ident = archive_id(envelope_id) if envelope_id else secrets.token_hex(12)
        self._add(owner, Entry(ident, self.clock_ms(), to, True, text, origin_id=message_id,
                               act=act))
        return ident

    def query(self, owner: str, query: Query) -> Page:
        return self.archive.query(owner, query)
