"""The record of shown envelopes lives in the key file (store.keystore, store.seen)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from bridge.store.keystore import MAGIC_PLAIN, IdentityRecord, Keystore
from bridge.store.seen import LEGACY_FILE, KeyfileSeen, import_delivered_db


def _keystore(path: Path, passphrase: str | None = None) -> Keystore:
    return Keystore(path, passphrase, kdf_ops=1, kdf_mem=8192 * 8)


def test_what_was_shown_survives_a_reload_encrypted_with_the_keys(tmp_path: Path) -> None:
    ks = _keystore(tmp_path, "pass phrase")
    ks.load()
    saves: list[int] = []
    seen = KeyfileSeen(ks, lambda: saves.append(1))
    seen.add(b"\x01" * 32, 2_000_000_000)
    seen.add(b"\x01" * 32, 2_000_000_000)  # again: no new save
    assert saves == [1]
    ks.save()
    assert b"\x01" * 16 not in (tmp_path / "keys.pim").read_bytes()
    again = _keystore(tmp_path, "pass phrase")
    again.load()
    assert b"\x01" * 32 in KeyfileSeen(again, lambda: None)
    seen = KeyfileSeen(again, lambda: saves.append(2))
    seen.purge(2_000_000_000)
    assert b"\x01" * 32 not in seen and saves == [1, 2]


def test_a_damaged_record_costs_the_record_not_the_keys(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ks = _keystore(tmp_path)
    ks.load()
    ks.doc.identities.append(IdentityRecord("00" * 32, "Alice", "alice", "pw", 1))
    ks.seen.add(b"\x02" * 32, 2_000_000_000)
    ks.save()
    for bad in ("!!not base64!!", "AgAA", 17):
        doc = json.loads((tmp_path / "keys.pim").read_bytes()[len(MAGIC_PLAIN):])
        doc["seen"] = bad
        (tmp_path / "keys.pim").write_bytes(MAGIC_PLAIN + json.dumps(doc).encode())
        again = _keystore(tmp_path)
        with caplog.at_level(logging.WARNING):
            again.load()
        assert [i.nick for i in again.doc.identities] == ["Alice"]
        assert len(again.seen) == 0 and "shown messages is unreadable" in caplog.text
        caplog.clear()


def test_an_old_delivered_db_moves_into_the_key_file(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / LEGACY_FILE)
    db.execute("CREATE TABLE delivered (id BLOB PRIMARY KEY, expiry INTEGER NOT NULL)")
    db.executemany("INSERT INTO delivered VALUES (?, ?)",
                   [(b"\x03" * 32, 2_000), (b"\x04" * 32, 500), (b"bad", 2_000)])
    db.commit()
    db.close()
    ks = _keystore(tmp_path)
    ks.load()
    assert import_delivered_db(tmp_path, ks, now=1_000) == 1
    assert not (tmp_path / LEGACY_FILE).exists()
    again = _keystore(tmp_path)
    again.load()
    assert b"\x03" * 32 in again.seen and b"\x04" * 32 not in again.seen
    assert import_delivered_db(tmp_path, again, now=1_000) == 0


def test_an_unreadable_delivered_db_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / LEGACY_FILE).write_bytes(b"not a database at all" * 100)
    ks = _keystore(tmp_path)
    ks.load()
    assert import_delivered_db(tmp_path, ks, now=1_000) == 0
    assert (tmp_path / LEGACY_FILE).exists()
