"""The record of shown envelopes lives beside the key file, in seen.pim, sealed under
the key file's key (store.keystore, store.seen)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
from pathlib import Path

import pytest

from bridge.core.seenset import SeenSet
from bridge.store.keystore import (
    MAGIC_PLAIN,
    SEEN_FILENAME,
    SEEN_PLAIN,
    SEEN_SEALED,
    IdentityRecord,
    Keystore,
)
from bridge.store.seen import LEGACY_FILE, KeyfileSeen, import_delivered_db


def _keystore(path: Path, passphrase: str | None = None) -> Keystore:
    return Keystore(path, passphrase, kdf_ops=1, kdf_mem=8192 * 8)


def _seen(ks: Keystore) -> KeyfileSeen:
    return KeyfileSeen(ks, asyncio.ensure_future, delay=0.01)


async def test_what_was_shown_survives_a_reload_sealed_with_the_keys(tmp_path: Path) -> None:
    ks = _keystore(tmp_path, "pass phrase")
    ks.load()
    seen = _seen(ks)
    seen.add(b"\x01" * 32, 2_000_000_000)
    seen.add(b"\x01" * 32, 2_000_000_000)  # again: nothing new
    path = tmp_path / SEEN_FILENAME
    for _ in range(200):  # written within its delay, without a key-file save
        if path.exists():
            break
        await asyncio.sleep(0.01)
    raw = path.read_bytes()
    assert raw.startswith(SEEN_SEALED) and b"\x01" * 16 not in raw
    assert not (tmp_path / "keys.pim").exists()
    assert (path.stat().st_mode & 0o777) == 0o600
    again = _keystore(tmp_path, "pass phrase")
    ks.save()  # the key file, whose key seals the record
    again.load()
    assert b"\x01" * 32 in again.seen
    seen = _seen(again)
    seen.purge(2_000_000_000)
    await seen.flush()
    third = _keystore(tmp_path, "pass phrase")
    third.load()
    assert b"\x01" * 32 not in third.seen


async def test_a_new_passphrase_seals_the_record_again(tmp_path: Path) -> None:
    ks = _keystore(tmp_path, "first")
    ks.load()
    ks.seen.add(b"\x05" * 32, 2_000_000_000)
    ks.save()
    ks.change_passphrase("second")
    again = _keystore(tmp_path, "second")
    again.load()
    assert b"\x05" * 32 in again.seen
    again.change_passphrase(None)  # plain again, both files
    assert (tmp_path / SEEN_FILENAME).read_bytes().startswith(SEEN_PLAIN)
    plain = _keystore(tmp_path)
    plain.load()
    assert b"\x05" * 32 in plain.seen


def test_a_damaged_record_costs_the_record_not_the_keys(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ks = _keystore(tmp_path)
    ks.load()
    ks.doc.identities.append(IdentityRecord("00" * 32, "Alice", "alice", "pw", 1))
    ks.seen.add(b"\x02" * 32, 2_000_000_000)
    ks.save()
    for bad in (b"PIMS0\n\x01abc", b"PIMS1\n" + b"x" * 64, b"not a record",
                SEEN_PLAIN + b"\x01" * (2 * 1024 * 1024)):
        (tmp_path / SEEN_FILENAME).write_bytes(bad)
        again = _keystore(tmp_path)
        with caplog.at_level(logging.WARNING):
            again.load()
        assert [i.nick for i in again.doc.identities] == ["Alice"]
        assert len(again.seen) == 0 and "shown messages is unreadable" in caplog.text
        caplog.clear()


def test_an_earlier_key_files_record_moves_out_of_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = SeenSet()
    old.add(b"\x06" * 32, 2_000_000_000)
    ks = _keystore(tmp_path)
    ks.load()
    ks.doc.identities.append(IdentityRecord("00" * 32, "Alice", "alice", "pw", 1))
    ks.save()
    doc = json.loads((tmp_path / "keys.pim").read_bytes()[len(MAGIC_PLAIN):])
    doc["seen"] = base64.b64encode(old.to_bytes()).decode()  # as earlier versions wrote it
    (tmp_path / "keys.pim").write_bytes(MAGIC_PLAIN + json.dumps(doc).encode())
    (tmp_path / SEEN_FILENAME).unlink()
    again = _keystore(tmp_path)
    again.load()
    assert b"\x06" * 32 in again.seen
    assert (tmp_path / SEEN_FILENAME).exists(), "moved out at once, before any key-file save"
    again.save()
    assert json.loads((tmp_path / "keys.pim").read_bytes()[len(MAGIC_PLAIN):])["seen"] == ""
    third = _keystore(tmp_path)
    third.load()
    assert b"\x06" * 32 in third.seen
    for bad in ("!!not base64!!", "AgAA", 17):  # an earlier file's damaged record
        (tmp_path / SEEN_FILENAME).unlink()
        doc["seen"] = bad
        (tmp_path / "keys.pim").write_bytes(MAGIC_PLAIN + json.dumps(doc).encode())
        with caplog.at_level(logging.WARNING):
            fourth = _keystore(tmp_path)
            fourth.load()
        assert [i.nick for i in fourth.doc.identities] == ["Alice"]
        assert len(fourth.seen) == 0 and "unreadable" in caplog.text
        caplog.clear()
        fourth.save()


def test_an_old_delivered_db_moves_into_the_record(tmp_path: Path) -> None:
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
