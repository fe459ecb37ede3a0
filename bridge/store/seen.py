"""Which envelopes were already handed to the user, so each is shown once.

The record lives beside the key file (``Keystore.seen``, a ``core.seenset.SeenSet``,
written to ``seen.pim``), in both storage modes: with the RAM store, peers still hold
what was shown before a restart and offer it again; with SQLite, the node replays its
own store at start; and any relay may replay an envelope it kept until it expires. Only
envelopes that were *shown* are recorded — a message held as a contact request is
opened again at the next start and held again, so it is never lost.

Earlier versions kept the record in ``delivered.db`` beside the SQLite store, in the
clear; ``import_delivered_db`` moves it into the seen file once and deletes it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from bridge.store.keystore import Keystore

log = logging.getLogger(__name__)

LEGACY_FILE = "delivered.db"
# What one run remembers of envelopes it opened and messages it handed out but no
# face confirmed yet; both forget expired envelopes, and past the cap the oldest.
MAX_REMEMBERED = 100_000


class ExpiringIds(OrderedDict[bytes, int]):
    """Envelope id -> expiry, oldest first, at most ``cap`` entries."""

    def __init__(self, cap: int = MAX_REMEMBERED) -> None:
        super().__init__()
        self.cap = cap

    def put(self, key: bytes, expiry: int) -> None:
        self[key] = expiry
        self.move_to_end(key)
        while len(self) > self.cap:
            self.popitem(last=False)

    def purge(self, now: int) -> None:
        for key in [k for k, e in self.items() if e <= now]:
            del self[key]


class SeenIds(Protocol):
    def __contains__(self, envelope_id: object) -> bool: ...
    def add(self, envelope_id: bytes, expiry: int) -> None: ...
    def purge(self, now: int) -> None: ...


class KeyfileSeen:
    """The key store's seen-set, written to its own file (``Keystore.seen_path``) at
    most ``delay`` seconds after a change, so a stream of arrivals is one write. A
    crash inside that window may show those few messages again after the restart
    (unless the key file already says their keys are gone: then they cannot open)."""

    def __init__(self, keystore: Keystore,
                 spawn: Callable[[Coroutine[Any, Any, None]], object], delay: float) -> None:
        self.keystore = keystore
        self.spawn = spawn
        self.delay = delay
        self._dirty = False
        self._pending = False

    def save_soon(self) -> None:
        self._dirty = True
        if not self._pending:
            self._pending = True
            self.spawn(self._save_later())

    async def _save_later(self) -> None:
        try:
            await asyncio.sleep(self.delay)
            while self._dirty:
                self._dirty = False
                await self.keystore.save_seen_async()
        finally:
            self._pending = False

    async def flush(self) -> None:
        """Write what changed now (after the service's tasks were cancelled)."""
        if self._dirty:
            self._dirty = False
            await self.keystore.save_seen_async()

    def __contains__(self, envelope_id: object) -> bool:
        return envelope_id in self.keystore.seen

    def __len__(self) -> int:
        return len(self.keystore.seen)

    def add(self, envelope_id: bytes, expiry: int) -> None:
        if self.keystore.seen.add(envelope_id, expiry):
            self.save_soon()

    def purge(self, now: int) -> None:
        if self.keystore.seen.purge(now):
            self.save_soon()


def import_delivered_db(data_dir: Path, keystore: Keystore, now: int) -> int:
    """Move an old ``delivered.db``'s live ids into the key file (saved before the
    old file is deleted). Returns how many were taken; an unreadable file is left
    where it is."""
    path = data_dir / LEGACY_FILE
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, expiry FROM delivered WHERE expiry > ?",
                              (now,)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.warning("%s could not be read (%s); it is left as it is", path, exc)
        return 0
    taken = 0
    for envelope_id, expiry in rows:
        if isinstance(envelope_id, bytes) and len(envelope_id) >= 16 and isinstance(expiry, int):
            taken += keystore.seen.add(envelope_id, expiry)
    if taken:
        keystore.save()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return taken
