"""The seen-set: bounded, expiring, strictly encoded (core.seenset)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.seenset import ENTRY, SeenSet, SeenSetError


def _id(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


def test_an_id_is_remembered_until_its_envelope_expires() -> None:
    s = SeenSet()
    assert s.add(_id(1), 100) and not s.add(_id(1), 500)
    assert _id(1) in s and _id(2) not in s and "text" not in s
    assert s.purge(99) == 0 and _id(1) in s
    assert s.purge(100) == 1 and _id(1) not in s and len(s) == 0


def test_past_its_cap_the_id_expiring_soonest_goes_first() -> None:
    s = SeenSet(cap=3)
    for n, expiry in [(1, 300), (2, 100), (3, 200), (4, 400)]:
        s.add(_id(n), expiry)
    assert _id(2) not in s and all(_id(n) in s for n in (1, 3, 4)) and len(s) == 3


def test_ids_are_kept_by_their_first_16_bytes() -> None:
    s = SeenSet()
    s.add(b"\x07" * 32, 10)
    assert b"\x07" * 16 + b"\x00" * 16 in s
    with pytest.raises(SeenSetError):
        s.add(b"short", 10)


@given(st.dictionaries(st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1),
                       max_size=50))
def test_the_encoding_round_trips(entries: dict[bytes, int]) -> None:
    s = SeenSet()
    for k, e in entries.items():
        s.add(k, e)
    t = SeenSet()
    t.load(s.to_bytes())
    assert len(t) == len(entries) and all(k in t for k in entries)
    assert t.to_bytes() == s.to_bytes()


@pytest.mark.parametrize(("data", "why"), [
    (b"\x02", "version 2"),
    (b"\x01" + b"\x00" * 19, "cut short"),
    (b"\x01" + ENTRY.pack(b"a" * 16, 5) * 2, "twice"),
    (b"\x01" + b"".join(ENTRY.pack(n.to_bytes(16, "big"), 5) for n in range(3)), "cap"),
])
def test_a_bad_encoding_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(SeenSetError, match=why.split()[-1]):
        SeenSet(cap=2).load(data)


@given(st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 40), st.integers(0, 60)),
    st.tuples(st.just("purge"), st.integers(0, 60), st.just(0)),
    st.tuples(st.just("reload"), st.just(0), st.just(0))), max_size=120))
def test_the_kept_encoding_is_always_that_of_the_contents(ops: list[tuple[str, int, int]]
                                                          ) -> None:
    """Saving takes the encoding kept up to date as ids come and go; whatever happened
    (additions, purges, the cap's evictions, a reload), it decodes to what is held."""
    s = SeenSet(cap=16)
    for op, a, b in ops:
        if op == "add":
            s.add(_id(a), b)
        elif op == "purge":
            s.purge(a)
        else:
            t = SeenSet(cap=16)
            t.load(s.to_bytes())
            s = t
        fresh = SeenSet(cap=16)
        fresh.load(s.to_bytes())
        assert len(fresh) == len(s) <= 16
        assert all(_id(n) in fresh for n in range(41) if _id(n) in s)
