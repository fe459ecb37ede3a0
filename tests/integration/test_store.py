"""Both stores behave alike; SQLite commits in groups, off the event loop, and loses
nothing it acknowledged across kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bridge.store.memory import MemoryStore
from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import make_envelope
from tests.store_support import priced

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path):
    def make(**kw):
        if request.param == "memory":
            return MemoryStore(**kw)
        return SQLiteStore(str(tmp_path / f"s{time.monotonic_ns()}.db"), **kw)

    return make


def test_add_get_duplicate_and_order(make_store):
    s = make_store()
    now = int(time.time())
    envs = [make_envelope(now, ttl=100 * (i + 1)) for i in range(5)]
    for e in reversed(envs):
        assert s.add(e, now)
    assert not s.add(envs[0], now)
    assert len(s) == 5 and envs[2].id in s and s.get(envs[2].id) == envs[2].raw
    assert list(s.iter_raw()) == [e.raw for e in envs]  # earliest expiry first
    assert s.total_bytes == sum(len(e.raw) for e in envs)


def test_bounded_by_count_evicts_the_least_work_per_byte_second(make_store):
    s = make_store(max_count=3)
    now = int(time.time())
    envs = [priced(now, ttl=3600, extra=i) for i in range(5)]  # each worth twice the one before
    for e in envs[1:4]:
        assert s.add(e, now)
    assert not s.add(envs[0], now)  # worth less than the cheapest stored: refused
    assert s.add(envs[4], now)
    assert envs[1].id not in s and {envs[2].id, envs[3].id, envs[4].id} <= {
        k[10:] for k in s.index.iter_keys()
    }


def test_at_equal_value_the_older_arrival_goes(make_store):
    s = make_store(max_count=2)
    now = int(time.time())
    envs = [priced(now, ttl=7200) for _ in range(3)]  # same size, life and work
    for e in envs:
        assert s.add(e, now)
    assert envs[0].id not in s and envs[1].id in s and envs[2].id in s


def test_a_two_day_message_outranks_week_long_envelopes_of_the_same_price(make_store):
    """Each paid exactly what a node requires; the week-long ones hold their bytes
    3.5 times as long (and paid the surcharge past two days, which buys nothing)."""
    now = int(time.time())
    week = [priced(now, ttl=7 * 86400) for _ in range(4)]
    s = make_store(max_bytes=4 * len(week[0].raw))
    for e in week:
        assert s.add(e, now)
    honest = priced(now, ttl=2 * 86400)
    assert s.add(honest, now) and honest.id in s and len(s) == 4
    # paying more per byte-second outranks it, but the cheaper week-long ones go first
    assert s.add(priced(now, ttl=7 * 86400, extra=1), now)
    assert s.add(priced(now, ttl=7 * 86400, extra=2), now)
    assert honest.id in s and sum(e.id in s for e in week) == 1


def test_one_tag_holds_at_most_its_share(make_store):
    """A flood to one recipient tag competes only with itself beyond its share."""
    now = int(time.time())
    tag = os.urandom(16)
    first = priced(now, ttl=3600, tag=tag, bucket=16384)
    size = len(first.raw)
    s = make_store(max_bytes=16 * 5 * size)  # a tag's share is 5 such envelopes
    other = priced(now, ttl=3600)
    assert s.add(other, now) and s.add(first, now)
    flood = [priced(now, ttl=3600, tag=tag, bucket=16384, extra=1) for _ in range(8)]
    assert all(s.add(e, now) for e in flood)  # each worth more than the tag's cheapest
    held = [e for e in flood if e.id in s]
    assert held == flood[3:] and first.id not in s  # within the tag: cheapest, then oldest
    assert other.id in s and s.total_bytes == len(other.raw) + 5 * size
    assert not s.add(priced(now, ttl=3600, tag=tag, bucket=16384), now)  # worth less
    assert s.add(priced(now, ttl=3600, tag=os.urandom(16), bucket=16384), now)


def test_sqlite_reopens_with_its_eviction_order(tmp_path):
    now = int(time.time())
    envs = [priced(now, ttl=3600, extra=i) for i in (2, 0, 1)]
    s = SQLiteStore(str(tmp_path / "v.db"), max_count=3)
    for e in envs:
        s.add(e, now)
    s.close()
    s2 = SQLiteStore(str(tmp_path / "v.db"), max_count=3)
    assert s2.add(priced(now, ttl=3600, extra=3), int(time.time()))
    assert envs[1].id not in s2 and envs[0].id in s2 and envs[2].id in s2
    s2.close()


def test_bounded_by_bytes(make_store):
    now = int(time.time())
    envs = [make_envelope(now, ttl=100 * (i + 1)) for i in range(4)]
    s = make_store(max_bytes=2 * len(envs[0].raw))
    for e in envs:
        s.add(e, now)
    assert len(s) == 2 and s.total_bytes <= 2 * len(envs[0].raw)


def test_purge_drops_expired(make_store):
    s = make_store()
    now = int(time.time())
    short, long_ = make_envelope(now, ttl=10), make_envelope(now, ttl=1000)
    s.add(short, now)
    s.add(long_, now)
    assert s.purge(now + 20) == 1
    assert short.id not in s and long_.id in s and len(s.index) == 1


def test_sqlite_reopens_with_its_index(tmp_path):
    path = str(tmp_path / "n.db")
    now = int(time.time())
    s = SQLiteStore(path)
    envs = [make_envelope(now) for _ in range(10)]
    for e in envs:
        s.add(e, now)
    fp = s.index.fingerprint(0, 10)
    s.close()
    s2 = SQLiteStore(path)
    assert len(s2) == 10 and s2.index.fingerprint(0, 10) == fp and s2.integrity_ok()


def test_sqlite_loses_nothing_acknowledged_across_kill_9(tmp_path):
    path = str(tmp_path / "node.db")
    now = int(time.time())
    envs = [make_envelope(now) for _ in range(400)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.sqlite_node_child", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().startswith("ready")

    def feed() -> None:  # keep writing; the kill lands mid-stream
        try:
            for e in envs:
                child.stdin.write(e.raw.hex() + "\n")
                child.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    acked = []
    for line in child.stdout:
        acked.append(bytes.fromhex(line.split()[1]))
        if len(acked) == 150:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(10)
    feeder.join(10)
    with contextlib.suppress(OSError):  # what the feeder left buffered has nowhere to go
        child.stdin.close()
    # lines already printed before the kill are acknowledged too
    acked += [bytes.fromhex(x.split()[1]) for x in child.stdout.read().splitlines() if x]
    s = SQLiteStore(path)
    assert s.integrity_ok()
    missing = [a for a in acked if a not in s]
    assert not missing and len(s) >= len(acked) >= 150
    stored = {k[10:] for k in s.index.iter_keys()}
    assert stored <= {e.id for e in envs}


async def test_sqlite_group_commit_gathers_concurrent_writes_off_the_loop(tmp_path):
    path = str(tmp_path / "g.db")
    s = SQLiteStore(path)
    now = int(time.time())
    envs = [make_envelope(now) for _ in range(200)]
    writers: set[int] = set()
    write = s._write

    def spy(ops):
        writers.add(threading.get_ident())
        write(ops)

    s._write = spy

    async def store(e):
        assert s.add(e, now)
        assert e.id in s and s.get(e.id) == e.raw  # in the view at once
        await s.flush()
        assert s.commits >= 1  # returned only after a commit

    await asyncio.gather(*(store(e) for e in envs))
    # the first writer commits alone; the 199 that came meanwhile share the next commit
    assert s.pending == 0 and s.commits <= 3
    assert writers and threading.get_ident() not in writers
    s2 = SQLiteStore(path)  # another connection sees everything committed
    assert all(e.id in s2 for e in envs) and s2.integrity_ok()
    s.close()
    s2.close()


async def test_sqlite_failed_commit_is_retried_and_not_acknowledged(tmp_path):
    s = SQLiteStore(str(tmp_path / "f.db"))
    now = int(time.time())
    envs = [make_envelope(now) for _ in range(3)]
    write, failures = s._write, [1]

    def flaky(ops):
        if failures:
            failures.pop()
            raise sqlite3.OperationalError("disk I/O error")
        write(ops)

    s._write = flaky
    s.add(envs[0], now)
    with pytest.raises(sqlite3.OperationalError):
        await s.flush()
    assert s.pending == 1 and s.commits == 0 and envs[0].id in s
    s.add(envs[1], now)
    await s.flush()
    assert s.pending == 0 and s.commits == 1
    s.add(envs[2], now)
    s.close()  # commits what is staged
    s2 = SQLiteStore(str(tmp_path / "f.db"))
    assert all(e.id in s2 for e in envs)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sqlite_view_and_file_agree_with_the_ram_store(tmp_path, seed):
    """Adds, evictions and purges staged across many group commits, some flushed
    while the next batch is staged: the view always matches the RAM store, and
    the file, reopened, holds exactly the view."""
    rnd = random.Random(seed)
    path = str(tmp_path / "m.db")
    s, m = SQLiteStore(path, max_count=20), MemoryStore(max_count=20)
    now = int(time.time())
    pool = [make_envelope(now, ttl=rnd.randrange(10, 400)) for _ in range(80)]
    flushes = []
    for step in range(300):
        r = rnd.random()
        if r < 0.75:
            e = rnd.choice(pool)
            assert s.add(e, now) == m.add(e, now)
        elif r < 0.85:
            now += rnd.randrange(0, 30)
            assert s.purge(now) == m.purge(now)
        else:
            flushes.append(asyncio.create_task(s.flush()))  # left running meanwhile
            if step % 2:
                await asyncio.sleep(0)
        assert len(s) == len(m) and s.total_bytes == m.total_bytes
        assert list(s.iter_raw()) == list(m.iter_raw())
        assert all((e.id in s) == (e.id in m) and s.get(e.id) == m.get(e.id) for e in pool)
    await asyncio.gather(*flushes)
    await s.flush()
    assert s.commits > 3
    view = list(s.iter_raw())
    s.close()
    s2 = SQLiteStore(path, max_count=20)
    assert list(s2.iter_raw()) == view and len(s2) == len(view)
    assert s2.total_bytes == sum(len(r) for r in view)
