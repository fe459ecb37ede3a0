"""Where the message archive (``core.archive``) lives between runs.

With the RAM store nothing of it is written: the archive dies with the daemon, like
everything else received. With ``--storage sqlite`` it is kept in ``archive.db``
beside the node's store, every row sealed (XChaCha20-Poly1305) under a key kept in
the key file: with a passphrase on the keys, the archive is as safe as they are;
the file shows only how many rows each identity has (under a keyed hash, not its
address) and their order. The whole archive is read into RAM at start (it is
bounded per identity), so queries never touch the disk.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from pathlib import Path

from bridge.core import crypto
from bridge.core.archive import Archive, Entry
from bridge.core.errors import DecryptionError

log = logging.getLogger(__name__)

FILENAME = "archive.db"
_NONCE = crypto.AEAD_NONCE_SIZE


class ArchiveFile:
    """The sealed rows of one data directory's archive."""

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the archive key is 32 bytes")
        self._key = key
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        # An archived row lost to a power cut costs history, not a message: no fsync per row.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (owner BLOB NOT NULL, id BLOB NOT NULL, "
            "sealed BLOB NOT NULL, PRIMARY KEY (owner, id))")

    def _owner(self, owner: str) -> bytes:
        return crypto.derive(crypto.CTX_ARCHIVE_OWNER, self._key + owner.encode(), 16)

    def _rowid(self, owner: str, archive_id: str) -> bytes:
        return crypto.derive(crypto.CTX_ARCHIVE_ROW, self._key + f"{owner}\0{archive_id}".encode(),
                             16)

    def load(self, archive: Archive, owners: list[str]) -> int:
        """Read every row of ``owners`` into ``archive``, in order; rows that do not
        open (another key, damage) are skipped and counted in the log. Returns how
        many were read."""
        read = bad = 0
        for owner in owners:
            rows = self._db.execute("SELECT sealed FROM entries WHERE owner = ? ORDER BY rowid",
                                    (self._owner(owner),)).fetchall()
            for (sealed,) in rows:
                try:
                    entry = self._open(owner, bytes(sealed))
                except (ValueError, KeyError, TypeError, DecryptionError):
                    bad += 1
                    continue
                for old in archive.add(owner, entry):
                    self.delete(owner, [old])
                read += 1
        if bad:
            log.warning("%d archived messages could not be read and were left out", bad)
        return read

    def _open(self, owner: str, sealed: bytes) -> Entry:
        plain = crypto.aead_decrypt(self._key, sealed[:_NONCE], sealed[_NONCE:],
                                    self._owner(owner))
        d = json.loads(plain)
        return Entry(str(d["id"]), int(d["at"]), str(d["peer"]), bool(d["out"]), str(d["body"]),
                     bool(d["muc"]), str(d["nick"]), str(d["origin"]), str(d.get("act", "")))

    def add(self, owner: str, entry: Entry) -> None:
        plain = json.dumps({"id": entry.id, "at": entry.at_ms, "peer": entry.peer,
                            "out": entry.outgoing, "body": entry.body, "muc": entry.groupchat,
                            "nick": entry.nick, "origin": entry.origin_id,
                            **({"act": entry.act} if entry.act else {})}).encode()
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + crypto.aead_encrypt(self._key, nonce, plain, self._owner(owner))
        self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                         (self._owner(owner), self._rowid(owner, entry.id), sealed))

    def delete(self, owner: str, entries: list[Entry]) -> None:
        self._db.executemany("DELETE FROM entries WHERE owner = ? AND id = ?",
                             [(self._owner(owner), self._rowid(owner, e.id)) for e in entries])

    def forget(self, owner: str) -> None:
        self._db.execute("DELETE FROM entries WHERE owner = ?", (self._owner(owner),))

    def close(self) -> None:
        self._db.close()
