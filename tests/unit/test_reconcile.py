"""Range-based reconciliation: after a session the initiator knows exactly the
symmetric difference, and the bytes grow with the difference, not the sets."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.errors import RemoteProtocolError
from bridge.core.reconcile import INF_KEY, Reconciler, make_key, minimal_bound
from bridge.store.index import SortedIndex


def run_session(a: SortedIndex, b: SortedIndex, **kw: int) -> tuple[Reconciler, int]:
    init = Reconciler(a, initiator=True, **kw)
    msg: bytes | None = init.initiate()
    sent = 0
    while msg is not None:
        sent += len(msg)
        reply = Reconciler(b, initiator=False, **kw).receive(msg)
        assert reply is not None
        sent += len(reply)
        msg = init.receive(reply)
    return init, sent


item = st.tuples(st.integers(0, 50), st.binary(min_size=32, max_size=32))


@settings(max_examples=150, deadline=None)
@given(
    # an id fixes its expiry (the id hashes the whole envelope), so ids are unique
    items=st.lists(item, max_size=200, unique_by=lambda t: t[1]),
    sides=st.lists(st.sampled_from("aab"), min_size=200, max_size=200),
    buckets=st.integers(2, 8),
    idlist_max=st.integers(2, 20),
)
def test_initiator_learns_exact_symmetric_difference(items, sides, buckets, idlist_max):
    a, b = SortedIndex(), SortedIndex()
    for (e, i), side in zip(items, sides, strict=False):
        if side in "ab" and side == "a" and i[0] % 3:
            a.add(i[1] % 4, e, i)
            b.add(i[1] % 4, e, i)  # shared
        elif side == "a":
            a.add(i[1] % 4, e, i)
        else:
            b.add(i[1] % 4, e, i)
    ka, kb = set(a.iter_keys()), set(b.iter_keys())
    init, _ = run_session(a, b, buckets=buckets, idlist_max=idlist_max)
    assert set(init.have) == {k[10:] for k in ka - kb}
    assert set(init.need) == {k[10:] for k in kb - ka}


def test_equal_sets_finish_in_one_round_trip():
    a = SortedIndex(make_key(i % 7, i, os.urandom(32)) for i in range(5000))
    b = SortedIndex(a.iter_keys())
    init, sent = run_session(a, b)
    assert init.have == init.need == []
    assert sent < 40


@pytest.mark.parametrize("diff", [10, 100])
def test_bytes_grow_with_difference_not_size(diff):
    rnd = random.Random(diff)
    keys = [make_key(rnd.randrange(1 << 16), rnd.randrange(1 << 30), rnd.randbytes(32))
            for _ in range(20_000)]
    a, b = SortedIndex(keys), SortedIndex(keys)
    for k in range(diff):
        (a if k % 2 else b).add(rnd.randrange(1 << 16), rnd.randrange(1 << 30), rnd.randbytes(32))
    init, sent = run_session(a, b)
    assert len(init.have) + len(init.need) == diff
    assert sent < 800 * diff


def test_frame_limit_is_respected_and_session_still_converges():
    a = SortedIndex(make_key(i % 5, i, os.urandom(32)) for i in range(3000))
    b = SortedIndex()
    init = Reconciler(a, initiator=True, frame_limit=4096)
    msg = init.initiate()
    while msg is not None:
        reply = Reconciler(b, initiator=False, frame_limit=4096).receive(msg)
        assert reply is not None and len(reply) <= 4096 + 64
        msg = init.receive(reply)
        assert msg is None or len(msg) <= 4096 + 64
    assert len(init.have) == 3000


def test_minimal_bound_lies_between():
    e = b"\x00\x05" + (7).to_bytes(8, "big")
    lo, hi = e + b"\x01\x02" + bytes(30), e + b"\x01\x03" + bytes(30)
    m = minimal_bound(lo, hi)
    assert lo < m <= hi and len(m) == 12
    assert minimal_bound(make_key(3, 1, bytes(32)), make_key(3, 2, bytes(32))) == (
        b"\x00\x03" + (2).to_bytes(8, "big"))
    assert minimal_bound(make_key(3, 9, bytes(32)), make_key(4, 1, bytes(32))) == b"\x00\x04"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x61",  # version 1's 40-byte keys
        b"\x62\x05",  # a bound of 4 bytes, cut short
        b"\x62\x01\x00",  # an empty bound: not above the start
        b"\x62\x2c" + bytes(44),  # a bound longer than a key
        b"\x62\x04\xff\xff\xff\x00",  # a finite bound at infinity
        b"\x62\x03\x00\x05\x00\x02\x00\x00",  # bounds must increase
        b"\x62\x00\x02\x05" + bytes(10),  # an id list cut short
        b"\x62\x00\x09",  # an unknown mode
    ],
)
def test_malformed_messages_are_remote_errors(payload):
    with pytest.raises(RemoteProtocolError):
        Reconciler(SortedIndex(), initiator=False).receive(payload)


def test_infinite_key_is_above_every_item():
    assert make_key(0xFFFF, (1 << 63) - 1, b"\xff" * 32) < INF_KEY


def test_have_and_need_come_in_key_order():
    """A listed range's difference comes in the set's own order (shard, expiry, id), never
    in a hash set's iteration order, which changes from one process to the next."""
    rnd = random.Random(7)
    a, b = SortedIndex(), SortedIndex()
    for _ in range(3):
        a.add(rnd.randrange(4), rnd.randrange(1 << 20), rnd.randbytes(32))
    for _ in range(40):
        b.add(rnd.randrange(4), rnd.randrange(1 << 20), rnd.randbytes(32))
    init, _ = run_session(a, b)
    assert init.need == [k[10:] for k in b.iter_keys()]
    init, _ = run_session(b, a)
    assert init.have == [k[10:] for k in b.iter_keys()]


def test_the_difference_is_listed_alike_under_any_hash_seed():
    code = (
        "import random\n"
        "from bridge.store.index import SortedIndex\n"
        "from tests.unit.test_reconcile import run_session\n"
        "rnd = random.Random(3); a, b = SortedIndex(), SortedIndex()\n"
        "for k in range(400):\n"
        "    (a if k % 3 else b).add(k % 5, rnd.randrange(1 << 20), rnd.randbytes(32))\n"
        "init, _ = run_session(a, b)\n"
        "print(b''.join(init.need + init.have).hex())\n"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
