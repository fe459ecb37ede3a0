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


async def test_a_service_keeps_its_archive_across_a_restart_with_the_file(tmp_path: Path) -> None:
    """What Bob was shown and what he sent is there again after a restart (the
    --storage sqlite case); the RAM-only service starts with nothing."""
    from bridge.events import MessageArrived
    from bridge.net.workers import WorkerPool
    from bridge.service import Service
    from tests.integration.test_service import Inbox
    from tests.nodes import SharedNode

    pool = WorkerPool(1)
    node = SharedNode(6)
    try:
        a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=6)
        await a.start()
        ks = Keystore(tmp_path / "b")
        ks.load()
        file = ArchiveFile(tmp_path / "b" / FILENAME, ks.archive_key())
        b = Service(ks, node, pool, base_bits=6, archive_file=file)
        await b.start()
        alice = await a.create_identity("Alice")
        bob = await b.create_identity("Bob")
        b.add_contact(bob.address, alice.address, "alice")
        b_in = Inbox(b)
        await a.send_message(alice.address, bob.address, "kept for later")
        await b_in.wait(MessageArrived, text="kept for later")
        await b.send_message(bob.address, alice.address, "and my answer")
        await b.stop()
        file.close()

        ks = Keystore(tmp_path / "b")
        ks.load()
        file = ArchiveFile(tmp_path / "b" / FILENAME, ks.archive_key())
        again = Service(ks, node, pool, base_bits=6, archive_file=file)
        await again.start()
        page = again.archive_query(bob.address, Query(peer=alice.address))
        assert [(e.body, e.outgoing) for e in page.items] == [
            ("kept for later", False), ("and my answer", True)]
        await again.stop()
        file.close()

        ram = Service(Keystore(tmp_path / "b"), node, pool, base_bits=6)
        await ram.start()
        assert ram.archive_query(bob.address, Query()).items == ()
        await ram.stop()
        await a.stop()
    finally:
        pool.close()
