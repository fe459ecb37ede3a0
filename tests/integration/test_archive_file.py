"""The message archive on disk (store.archive): sealed rows, read back in order,
bounded with the archive, unreadable without the key file's key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.core.archive import Archive, Entry, Query
from bridge.store.archive import FILENAME, ArchiveFile
from bridge.store.keystore import Keystore

ME = "obp3vqa7kumyth2dppcc4qbfllu2wvf76ag6gqz267lipwphdlkycgqb"


def _entry(n: int, body: str = "") -> Entry:
    return Entry(f"a{n}", 1_000 * n, "alice@p2p.localhost", n % 2 == 0,
                 body or f"the secret plan #{n}", origin_id=f"m{n}")


def test_rows_come_back_in_order_and_hold_nothing_in_the_clear(tmp_path: Path) -> None:
    ks = Keystore(tmp_path)
    ks.load()
    key = ks.archive_key()
    assert Keystore(tmp_path).load().archive_key == key.hex()  # saved at once
    f = ArchiveFile(tmp_path / FILENAME, key)
    archive = Archive()
    for n in range(5):
        e = _entry(n)
        archive.add(ME, e)
        f.add(ME, e)
    f.close()
    raw = (tmp_path / FILENAME).read_bytes()
    assert b"secret plan" not in raw and ME.encode() not in raw and b"alice" not in raw
    assert oct((tmp_path / FILENAME).stat().st_mode & 0o777) == "0o600"

    again = Archive()
    f = ArchiveFile(tmp_path / FILENAME, key)
    assert f.load(again, [ME, "nobody"]) == 5
    assert again.entries(ME) == archive.entries(ME)
    assert again.query(ME, Query(after="a2")).items == tuple(archive.entries(ME)[3:])
    f.forget(ME)
    f.close()
    assert ArchiveFile(tmp_path / FILENAME, key).load(Archive(), [ME]) == 0


def test_the_bound_holds_across_a_restart_and_rows_evicted_are_deleted(tmp_path: Path) -> None:
    key = bytes(range(32))
    f = ArchiveFile(tmp_path / FILENAME, key)
    small = Archive(max_entries=3)
    for n in range(5):
        e = _entry(n)
        f.add(ME, e)
        f.delete(ME, small.add(ME, e))
    f.close()
    rows = sqlite3.connect(tmp_path / FILENAME).execute("SELECT count(*) FROM entries")
    assert rows.fetchone() == (3,)
    f = ArchiveFile(tmp_path / FILENAME, key)
    smaller = Archive(max_entries=2)  # the bound was lowered between runs
    assert f.load(smaller, [ME]) == 3
    assert [e.id for e in smaller.entries(ME)] == ["a3", "a4"]
    rows = sqlite3.connect(tmp_path / FILENAME).execute("SELECT count(*) FROM entries")
    assert rows.fetchone() == (2,)


def test_rows_under_another_key_are_left_out_and_said_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = ArchiveFile(tmp_path / FILENAME, bytes(32))
    f.add(ME, _entry(1))
    f.close()
    other = ArchiveFile(tmp_path / FILENAME, b"\x01" * 32)
    assert other.load(Archive(), [ME]) == 0  # another key: another owner hash, no rows
    other.close()
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("UPDATE entries SET sealed = zeroblob(80)")
    db.commit()
    db.close()
    assert ArchiveFile(tmp_path / FILENAME, bytes(32)).load(Archive(), [ME]) == 0
    assert "could not be read" in caplog.text
