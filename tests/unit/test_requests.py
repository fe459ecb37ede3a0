"""The contact-request queue: bounded in senders, bytes and messages per sender; the
request whose sender paid least per byte goes first, and a cheaper newcomer is refused."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.requests import RequestQueue, work_per_byte


def test_messages_wait_per_sender_in_order() -> None:
    q = RequestQueue[str](max_senders=4, max_bytes=10_000, max_per_sender=2)
    assert q.offer("a", "a1", size=100, expiry=50, score=1.0, now=0).new
    r = q.offer("a", "a2", size=100, expiry=50, score=1.0, now=1)
    assert r.kept and not r.new
    assert not q.offer("a", "a3", size=100, expiry=50, score=9.0, now=2).kept  # per sender
    req = q.pop("a")
    assert req is not None and req.items == ["a1", "a2"] and q.bytes == 0 and len(q) == 0


def test_full_queue_evicts_the_cheapest_and_refuses_a_cheaper_newcomer() -> None:
    q = RequestQueue[str](max_senders=2, max_bytes=10_000)
    q.offer("cheap", "x", size=100, expiry=50, score=1.0, now=0)
    q.offer("paid", "y", size=100, expiry=50, score=5.0, now=1)
    spam = q.offer("spam", "z", size=100, expiry=50, score=1.0, now=2)  # not worth more
    assert not spam.kept and "cheap" in q
    honest = q.offer("honest", "w", size=100, expiry=50, score=3.0, now=3)
    assert honest.kept and [e.sender for e in honest.evicted] == ["cheap"]
    assert {r.sender for r in q} == {"paid", "honest"}


def test_equal_worth_keeps_the_older_request() -> None:
    q = RequestQueue[str](max_senders=1, max_bytes=10_000)
    q.offer("first", "x", size=100, expiry=50, score=2.0, now=0)
    assert not q.offer("second", "y", size=100, expiry=50, score=2.0, now=5).kept


def test_bytes_bound_makes_room_only_from_cheaper_requests() -> None:
    q = RequestQueue[str](max_senders=10, max_bytes=1000)
    q.offer("a", "a", size=600, expiry=50, score=1.0, now=0)
    q.offer("b", "b", size=300, expiry=50, score=4.0, now=1)
    r = q.offer("c", "c", size=500, expiry=50, score=2.0, now=2)
    assert r.kept and [e.sender for e in r.evicted] == ["a"] and q.bytes == 800
    assert not q.offer("d", "d", size=900, expiry=50, score=3.0, now=3).kept  # b is worth more
    assert not q.offer("e", "e", size=2000, expiry=50, score=99.0, now=4).kept  # never fits


def test_expired_messages_leave_and_empty_requests_with_them() -> None:
    q = RequestQueue[str]()
    q.offer("a", "a1", size=10, expiry=100, score=1.0, now=0)
    q.offer("a", "a2", size=10, expiry=200, score=1.0, now=0)
    q.offer("b", "b1", size=10, expiry=100, score=1.0, now=0)
    assert [r.sender for r in q.purge(150)] == ["b"]
    a = q.get("a")
    assert a is not None and a.items == ["a2"] and q.bytes == 10


def test_work_per_byte() -> None:
    assert work_per_byte(20, 1024) == 10.0
    assert work_per_byte(20, 1024) > work_per_byte(20, 4096) > work_per_byte(18, 1024) - 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 3000), st.floats(0, 20),
                          st.integers(0, 1000)), max_size=200))
def test_bounds_always_hold(offers: list[tuple[int, int, float, int]]) -> None:
    q = RequestQueue[int](max_senders=8, max_bytes=8000, max_per_sender=5)
    for i, (who, size, score, expiry) in enumerate(offers):
        q.offer(f"s{who}", i, size=size, expiry=expiry, score=score, now=i)
        assert len(q) <= 8 and q.bytes <= 8000
        assert q.bytes == sum(r.size for r in q)
        assert all(1 <= len(r.held) <= 5 for r in q)
        if i % 17 == 0:
            q.purge(i * 5)
            assert q.bytes == sum(r.size for r in q)
