"""The SQLite store (opt-in): the same interface as the RAM store, on disk.

Durability argument. The database runs in WAL mode with ``synchronous=FULL``:
``add`` returns only after its transaction's WAL frames are written *and*
fsynced, so an envelope the node has acknowledged (``publish`` returned, or it
was announced onwards) survives a power cut, and so, a fortiori, ``kill -9``.
(``NORMAL`` would already survive ``kill -9`` — the WAL write sits in the OS page
cache, which outlives the process — but not a power cut; we pay one fsync per
envelope for the stronger promise.) A transaction that was not committed when
the process died is rolled back by SQLite on the next open, so the file is
never half-written.

The sorted (expiry, id) index for reconciliation is rebuilt in memory at open
from the table's expiry index; bodies stay on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from bridge.core.envelope import Envelope
from bridge.core.reconcile import make_key
from bridge.store.index import SortedIndex
from bridge.store.memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id     BLOB PRIMARY KEY,
    expiry INTEGER NOT NULL,
    raw    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_expiry ON envelopes (expiry, id);
"""


class SQLiteStore:
    kind = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_count: int = DEFAULT_MAX_COUNT,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self.max_bytes = max_bytes
        self.max_count = max_count
        # isolation_level=None: we open each transaction ourselves.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        rows = self._db.execute("SELECT expiry, id FROM envelopes").fetchall()
        self.index = SortedIndex(make_key(e, i) for e, i in rows)
        total_sql = "SELECT COALESCE(SUM(LENGTH(raw)), 0) FROM envelopes"
        (total,) = self._db.execute(total_sql).fetchone()
        self._bytes = int(total)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, envelope_id: object) -> bool:
        row = self._db.execute("SELECT 1 FROM envelopes WHERE id = ?", (envelope_id,)).fetchone()
        return row is not None

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def add(self, env: Envelope, now: int) -> bool:
        eid, size = env.id, len(env.raw)
        if env.expiry <= now or size > self.max_bytes or eid in self:
            return False
        evict = 0
        count, used = len(self.index), self._bytes
        keys = self.index.iter_keys()
        victims: list[bytes] = []
        while count - evict >= self.max_count or used + size > self.max_bytes:
            key = next(keys, None)
            if key is None or int.from_bytes(key[:8], "big") >= env.expiry:
                return False
            victims.append(key)
            evict += 1
            used -= self._size_of(key[8:])
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM envelopes WHERE id = ?", [(k[8:],) for k in victims])
            row = (eid, env.expiry, env.raw)
            db.execute("INSERT INTO envelopes (id, expiry, raw) VALUES (?, ?, ?)", row)
            db.execute("COMMIT")  # fsynced here: only now is the envelope acknowledged
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.index.pop_front(len(victims))
        self.index.add(env.expiry, eid)
        self._bytes = used + size
        return True

    def get(self, envelope_id: bytes) -> bytes | None:
        row = self._db.execute("SELECT raw FROM envelopes WHERE id = ?", (envelope_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def purge(self, now: int) -> int:
        n = self.index.count_expired(now)
        if n:
            (freed,) = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(raw)), 0) FROM envelopes WHERE expiry <= ?", (now,)
            ).fetchone()
            self._db.execute("DELETE FROM envelopes WHERE expiry <= ?", (now,))
            self.index.pop_front(n)
            self._bytes -= int(freed)
        return n

    def iter_raw(self) -> Iterator[bytes]:
        for (raw,) in self._db.execute("SELECT raw FROM envelopes ORDER BY expiry, id"):
            yield bytes(raw)

    def integrity_ok(self) -> bool:
        (res,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(res == "ok")

    def close(self) -> None:
        self._db.close()

    def _size_of(self, envelope_id: bytes) -> int:
        row = self._db.execute(
            "SELECT LENGTH(raw) FROM envelopes WHERE id = ?", (envelope_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])
