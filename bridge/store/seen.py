"""Which envelopes were already handed to the user, so each is delivered once.

In RAM mode this is a set that dies with the daemon, as the envelopes do. In
SQLite mode the node's store survives restarts and replays its envelopes at
start, so the delivered ids must survive too: a small table beside it, purged
of ids whose envelopes have expired. Only envelopes that were *shown* are
recorded — a message held as a contact request is opened again at the next
start and held again, so it is never lost.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol


class SeenIds(Protocol):
    def __contains__(self, envelope_id: object) -> bool: ...
    def add(self, envelope_id: bytes, expiry: int) -> None: ...
    def purge(self, now: int) -> None: ...


class MemorySeen:
    def __init__(self) -> None:
        self._ids: dict[bytes, int] = {}

    def __contains__(self, envelope_id: object) -> bool:
        return envelope_id in self._ids

    def add(self, envelope_id: bytes, expiry: int) -> None:
        self._ids[envelope_id] = expiry

    def purge(self, now: int) -> None:
        self._ids = {i: e for i, e in self._ids.items() if e > now}


class SQLiteSeen:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS delivered (id BLOB PRIMARY KEY, expiry INTEGER NOT NULL)"
        )

    def __contains__(self, envelope_id: object) -> bool:
        row = self._db.execute("SELECT 1 FROM delivered WHERE id = ?", (envelope_id,))
        return row.fetchone() is not None

    def add(self, envelope_id: bytes, expiry: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO delivered VALUES (?, ?)", (envelope_id, expiry))

    def purge(self, now: int) -> None:
        self._db.execute("DELETE FROM delivered WHERE expiry <= ?", (now,))

    def close(self) -> None:
        self._db.close()
