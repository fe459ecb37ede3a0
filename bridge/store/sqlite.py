"""The SQLite store (opt-in): the same interface as the RAM store, on disk, with group commit.

Durability argument. The database runs in WAL mode with ``synchronous=FULL``,
so a committed transaction's WAL frames are written *and* fsynced: it survives
a power cut and, a fortiori, ``kill -9``. (``NORMAL`` would already survive
``kill -9`` — the WAL write sits in the OS page cache, which outlives the
process — but not a power cut.) A transaction that was not committed when the
process died is rolled back by SQLite on the next open, so the file is never
half-written.

Group commit. ``add`` decides at once (duplicate, expiry, quota, eviction) and
*stages* the write: from then on the store's view (``in``, ``get``, ``len``,
``iter_raw``, the index) includes it, but it is not yet durable (``pending``
counts such writes). ``await flush()`` makes every write staged before the
call durable: one transaction and one fsync for all of them, on a writer
thread, never on the event loop; writes staged while that commit runs go
together into the next one. So the batching window is the length of one
commit, and under load one fsync serves as many envelopes as arrived during
the previous one.

"Acknowledged" means durable: the node returns from ``publish``, hands an
envelope to its subscribers, announces it (HAVE) and serves its body (ENVELOPE)
only after ``flush`` has returned for it. A staged envelope may appear in a
reconciliation fingerprint a few milliseconds early; nothing is promised by
that. Without an event loop (tools, tests, the benchmark baseline) ``commit()``
writes what is staged on the caller's thread, and ``group_commit=False`` makes
every ``add`` commit before it returns, the per-envelope behaviour. ``close()``
commits whatever is still staged.

The sorted (expiry, id) index for reconciliation, the tag index for light
peers and the eviction order (``ValueQueue``: the least work per byte per second
of remaining life goes first, and no tag holds more than its share) are rebuilt
in memory at open from the table; bodies stay on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import sqlite3
import time
from collections.abc import Iterator

from bridge.core import pow
from bridge.core.envelope import HEADER_SIZE, SIGNED_HEADER_SIZE, Envelope, pow_digest
from bridge.core.reconcile import make_key
from bridge.core.shards import shard_of_tag
from bridge.store.index import TAG_OFFSET, TAG_SIZE, SortedIndex, TagIndex, key_id
from bridge.store.memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_COUNT
from bridge.store.values import ValueQueue

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id     BLOB PRIMARY KEY,
    expiry INTEGER NOT NULL,
    raw    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_expiry ON envelopes (expiry, id);
"""
# A staged write: (sequence number, id, expiry, raw); raw None is a delete.
_Op = tuple[int, bytes, int, bytes | None]


class SQLiteStore:
    kind = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_count: int = DEFAULT_MAX_COUNT,
        synchronous: str = "FULL",
        group_commit: bool = True,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.group_commit = group_commit
        self.commits = 0  # transactions committed, each one fsync
        # Two connections: reads on the caller's thread (the event loop) see the last
        # committed state while the writer thread commits on its own connection (WAL).
        # isolation_level=None: we open each transaction ourselves.
        self._wdb = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._wdb.execute("PRAGMA journal_mode=WAL")
        self._wdb.execute(f"PRAGMA synchronous={synchronous}")
        self._wdb.executescript(_SCHEMA)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self.index = SortedIndex()
        self.tags = TagIndex()
        self.values = ValueQueue()
        keys: list[bytes] = []
        now = int(time.time())
        total = 0
        # One pass over the table, earliest expiry first (the arrival order is lost).
        for expiry, i, raw in self._db.execute(
            "SELECT expiry, id, raw FROM envelopes ORDER BY expiry, id"
        ):
            eid, raw = bytes(i), bytes(raw)
            tag = raw[TAG_OFFSET : TAG_OFFSET + TAG_SIZE]
            nonce = int.from_bytes(raw[SIGNED_HEADER_SIZE:HEADER_SIZE], "big")
            work = pow.work_bits(pow_digest(raw), nonce)
            keys.append(make_key(shard_of_tag(tag), expiry, eid))
            self.tags.add(tag, eid)
            self.values.add(self.values.entry(eid, tag, len(raw), expiry, work, now))
            total += len(raw)
        self.index = SortedIndex(keys)
        self._bytes = total
        self._ops: list[_Op] = []  # staged, not yet taken by a commit, in order
        self._staged: dict[bytes, _Op] = {}  # id -> its put, until committed
        self._gone: dict[bytes, int] = {}  # id -> sequence of its delete, until committed
        self._seq = 0  # writes staged so far
        self._durable = 0  # writes committed so far (sequence numbers are in order)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._inflight: tuple[concurrent.futures.Future[None], list[_Op], int] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, envelope_id: object) -> bool:
        if envelope_id in self._staged:
            return True
        if envelope_id in self._gone:
            return False
        row = self._db.execute("SELECT 1 FROM envelopes WHERE id = ?", (envelope_id,)).fetchone()
        return row is not None

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def pending(self) -> int:
        """Writes staged but not yet durable."""
        return self._seq - self._durable

    def add(self, env: Envelope, now: int) -> bool:
        eid, size = env.id, len(env.raw)
        if env.expiry <= now or size > self.max_bytes or eid in self:
            return False
        tag = env.tag
        admitted = self.values.admit(env, now, used=self._bytes, count=len(self.index),
                                     max_bytes=self.max_bytes, max_count=self.max_count)
        if admitted is None:
            return False  # worth less than what it would push out
        new, victims = admitted
        used = self._bytes
        for v in victims:
            self.index.remove(shard_of_tag(v[6]), v[3], v[5])
            self._stage_delete(v[5])
            used -= v[7]
        self._seq += 1
        op = (self._seq, eid, env.expiry, env.raw)
        self._ops.append(op)
        self._staged[eid] = op
        self._gone.pop(eid, None)
        self.index.add(shard_of_tag(tag), env.expiry, eid)
        self.tags.add(tag, eid)
        self.values.add(new)
        self._bytes = used + size
        if not self.group_commit:
            self.commit()  # fsynced here, before add returns
        return True

    def get(self, envelope_id: bytes) -> bytes | None:
        op = self._staged.get(envelope_id)
        if op is not None:
            return op[3]
        if envelope_id in self._gone:
            return None
        row = self._db.execute("SELECT raw FROM envelopes WHERE id = ?", (envelope_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def purge(self, now: int) -> int:
        expired = self.index.pop_expired(now)
        for key in expired:
            eid = key_id(key)
            self._bytes -= self._size_of(eid)
            self._stage_delete(eid)
        return len(expired)

    def iter_raw(self) -> Iterator[bytes]:
        """Every envelope in the store's view, earliest expiry first."""
        staged = sorted(((op[2], op[1]), op[3] or b"") for op in self._staged.values())
        rows = self._db.execute("SELECT expiry, id, raw FROM envelopes ORDER BY expiry, id")
        on_disk = (
            ((e, bytes(i)), raw)
            for e, i, raw in rows
            if i not in self._gone and i not in self._staged
        )
        for _key, raw in heapq.merge(on_disk, staged, key=lambda kv: kv[0]):
            yield bytes(raw)

    # --- making staged writes durable ------------------------------------------------

    async def flush(self) -> None:
        """Return once every write staged before the call is durable (one fsync for all)."""
        target = self._seq
        while self._durable < target:
            if self._inflight is None:
                self._start_commit()
            assert self._inflight is not None and self._waiter is not None
            cfut = self._inflight[0]
            try:
                await asyncio.shield(self._waiter)
            finally:
                if cfut.done():  # booked here too: a done waiter's callbacks may not have run
                    self._settle_inflight(cfut)

    def commit(self) -> None:
        """Write everything staged now, in one transaction, on the caller's thread."""
        self._settle_inflight()
        if not self._ops:
            return
        ops, upto = self._ops, self._seq
        self._ops = []
        try:
            self._write(ops)
        except BaseException:
            self._ops = ops + self._ops
            raise
        self._committed(ops, upto)

    def _start_commit(self) -> None:
        ops, upto = self._ops, self._seq
        self._ops = []
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="sqlite-commit"
            )
        cfut = self._executor.submit(self._write, ops)
        self._inflight = (cfut, ops, upto)
        self._waiter = asyncio.wrap_future(cfut)
        self._waiter.add_done_callback(lambda _f: self._settle_inflight(cfut))

    def _settle_inflight(self, which: concurrent.futures.Future[None] | None = None) -> None:
        """Book the commit in flight (``which``, if given), waiting for it if it still runs."""
        inflight = self._inflight
        if inflight is None or (which is not None and inflight[0] is not which):
            return  # already booked
        self._inflight = self._waiter = None
        cfut, ops, upto = inflight
        if cfut.exception() is not None:
            self._ops = ops + self._ops  # not durable: retried by the next commit
        else:
            self._committed(ops, upto)

    def _committed(self, ops: list[_Op], upto: int) -> None:
        self._durable = upto
        self.commits += 1
        for _seq, eid, _expiry, raw in ops:
            if raw is not None:
                put = self._staged.get(eid)
                if put is not None and put[0] <= upto:
                    del self._staged[eid]
            elif self._gone.get(eid, upto + 1) <= upto:
                del self._gone[eid]

    def _write(self, ops: list[_Op]) -> None:
        """One transaction for ``ops``, in order; on the writer thread or the caller's."""
        db = self._wdb
        db.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(ops):  # runs of puts and of deletes, each one executemany
                put = ops[i][3] is not None
                j = i
                while j < len(ops) and (ops[j][3] is not None) == put:
                    j += 1
                if put:
                    db.executemany(
                        "INSERT OR REPLACE INTO envelopes (id, expiry, raw) VALUES (?, ?, ?)",
                        [(eid, expiry, raw) for _s, eid, expiry, raw in ops[i:j]],
                    )
                else:
                    db.executemany(
                        "DELETE FROM envelopes WHERE id = ?", [(op[1],) for op in ops[i:j]]
                    )
                i = j
            db.execute("COMMIT")  # fsynced here: only now are these writes durable
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _stage_delete(self, eid: bytes) -> None:
        self.tags.remove(eid)
        self.values.remove(eid)
        self._seq += 1
        self._ops.append((self._seq, eid, 0, None))
        self._staged.pop(eid, None)
        self._gone[eid] = self._seq

    # --- the rest ------------------------------------------------------------------

    def integrity_ok(self) -> bool:
        (res,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(res == "ok")

    def close(self) -> None:
        """Commit what is staged (waiting for a commit in flight), then close."""
        try:
            self.commit()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._db.close()
            self._wdb.close()

    def _size_of(self, envelope_id: bytes) -> int:
        op = self._staged.get(envelope_id)
        if op is not None:
            return len(op[3] or b"")
        row = self._db.execute(
            "SELECT LENGTH(raw) FROM envelopes WHERE id = ?", (envelope_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])
