"""The message archive behind XEP-0313 (MAM): per identity, bounded, paged.

Pure: entries come in with their time; queries filter by the other party and a
time window, then page with XEP-0059 result set management (after / before an
archive id, at most ``max`` items, ``before`` empty for the last page). Each
identity keeps at most ``max_entries`` entries and ``max_bytes`` of text; past
either, its oldest entries go first, and the caller is told which (to delete
them from disk too).

Entries are kept in archive order (time, then arrival), and each gets an id that
never changes and is never reused: the XEP-0359 stanza-id a client quotes to ask
for what came after it.
"""

from __future__ import annotations

import base64
import bisect
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final

from bridge.core.errors import UserError

MAX_ENTRIES: Final = 10_000  # per identity
MAX_BYTES: Final = 8 * 1024 * 1024  # per identity, text and overhead
ENTRY_OVERHEAD: Final = 200  # bytes counted per entry beyond its texts
MAX_PAGE: Final = 250  # the most a query returns at once, whatever it asks


def archive_id(envelope_id: bytes) -> str:
    """The archive id (XEP-0359 stanza-id) of the message an envelope carried: shown to
    one identity, or sent by it. Derived, so the same message is archived once, and
    the XMPP side can name it as soon as it knows the envelope."""
    return base64.b32encode(envelope_id[:15]).decode().lower()


class ArchiveError(UserError):
    """A query the archive cannot answer (XEP-0313 item-not-found / bad-request)."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str  # archive id (stanza-id), unique for ever within an identity's archive
    at_ms: int  # when archived; the archive's order
    peer: str  # the other party: a contact's bare JID, or the room's JID
    outgoing: bool
    body: str
    groupchat: bool = False
    nick: str = ""  # a room message's sender nick
    origin_id: str = ""  # the sending client's message id
    # what this message does to an earlier one: "correction ID", "retraction ID",
    # "reply ID me" (a message the identity wrote) or "reply ID peer"; "" for none
    act: str = ""

    @property
    def size(self) -> int:
        return (ENTRY_OVERHEAD + len(self.body.encode()) + len(self.peer) + len(self.nick)
                + len(self.origin_id) + len(self.act))


@dataclass(frozen=True, slots=True)
class Query:
    peer: str | None = None  # XEP-0313 'with' (a bare JID)
    groupchat: bool | None = None  # a user's archive (False) or a room's (True); None: both
    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # inclusive
    after: str | None = None  # RSM: items after this id
    before: str | None = None  # RSM: items before this id; "" = the last page
    max: int = 50
    ids: tuple[str, ...] = ()  # XEP-0313 2: just these (in archive order)


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Entry, ...]
    count: int  # how many match the filter, all pages together
    complete: bool  # no more in the direction paged (XEP-0313 'complete')
    first_index: int = 0  # position of items[0] among the matches (RSM first@index)

    @property
    def first(self) -> str | None:
        return self.items[0].id if self.items else None

    @property
    def last(self) -> str | None:
        return self.items[-1].id if self.items else None


@dataclass
class _Log:
    entries: deque[Entry] = field(default_factory=deque)
    keys: deque[tuple[int, int]] = field(default_factory=deque)  # (at_ms, seq), sorted
    by_id: dict[str, tuple[int, int]] = field(default_factory=dict)
    bytes: int = 0
    seq: int = 0
    last_ms: int = 0


class Archive:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._logs: dict[str, _Log] = {}

    def __len__(self) -> int:
        return sum(len(log.entries) for log in self._logs.values())

    def count(self, owner: str) -> int:
        log = self._logs.get(owner)
        return len(log.entries) if log else 0

    def add(self, owner: str, entry: Entry) -> list[Entry]:
        """Append ``entry`` (its time is raised to the newest one's, so the order is
        the order of arrival); the entries evicted to keep within bounds."""
        log = self._logs.setdefault(owner, _Log())
        if entry.id in log.by_id:
            raise ArchiveError(f"archive id {entry.id[:64]} is taken")
        if entry.at_ms < log.last_ms:
            entry = replace(entry, at_ms=log.last_ms)
        log.last_ms = entry.at_ms
        log.seq += 1
        key = (entry.at_ms, log.seq)
        log.entries.append(entry)
        log.keys.append(key)
        log.by_id[entry.id] = key
        log.bytes += entry.size
        evicted = []
        while len(log.entries) > self.max_entries or (log.bytes > self.max_bytes
                                                      and len(log.entries) > 1):
            old = log.entries.popleft()
            log.keys.popleft()
            del log.by_id[old.id]
            log.bytes -= old.size
            evicted.append(old)
        return evicted

    def forget(self, owner: str) -> None:
        self._logs.pop(owner, None)

    def entries(self, owner: str) -> list[Entry]:
        log = self._logs.get(owner)
        return list(log.entries) if log else []

    def query(self, owner: str, q: Query) -> Page:
        log = self._logs.get(owner)
        entries = list(log.entries) if log else []
        keys = list(log.keys) if log else []
        if q.ids:
            wanted = set(q.ids)
            unknown = [i for i in q.ids if log is None or i not in log.by_id]
            if unknown:
                raise ArchiveError(f"no archived message with id {unknown[0][:64]}")
            found = tuple(e for e in entries if e.id in wanted)
            return Page(found, len(found), True)
        lo = 0 if q.start_ms is None else bisect.bisect_left(keys, (q.start_ms, -1))
        hi = len(keys) if q.end_ms is None else bisect.bisect_right(keys, (q.end_ms, 1 << 62))
        matches = [e for e in entries[lo:hi] if (q.peer is None or e.peer == q.peer)
                   and (q.groupchat is None or e.groupchat == q.groupchat)]
        limit = max(0, min(q.max, MAX_PAGE))
        if q.after is not None and q.before is not None and q.before != "":
            raise ArchiveError("ask for a page after an id or before one, not both")
        if q.after is not None:
            at, exact = self._position(log, matches, q.after)
            start = at + 1 if exact else at
            page = matches[start:start + limit]
            return Page(tuple(page), len(matches), start + limit >= len(matches), start)
        if q.before is not None:
            end = len(matches) if q.before == "" else self._position(log, matches, q.before)[0]
            start = max(0, end - limit)
            return Page(tuple(matches[start:end]), len(matches), start == 0, start)
        return Page(tuple(matches[:limit]), len(matches), limit >= len(matches), 0)

    @staticmethod
    def _position(log: _Log | None, matches: list[Entry], archive_id: str) -> tuple[int, bool]:
        """Where ``archive_id`` falls among ``matches``: the index of the first match
        not before it, and whether that match is it (it may be filtered out)."""
        if log is None or archive_id not in log.by_id:
            raise ArchiveError(f"no archived message with id {archive_id[:64]}")
        key = log.by_id[archive_id]
        ids = [log.by_id[e.id] for e in matches]
        at = bisect.bisect_left(ids, key)
        return at, at < len(ids) and ids[at] == key
