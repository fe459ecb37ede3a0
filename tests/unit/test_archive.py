"""The message archive behind MAM (core.archive): order, filters, paging, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.archive import MAX_PAGE, Archive, ArchiveError, Entry, Query

PEERS = ("alice@p2p.localhost", "bob@p2p.localhost", "public@rooms.localhost")


def _entry(n: int, at_ms: int, peer: str = PEERS[0], body: str = "") -> Entry:
    return Entry(f"id{n}", at_ms, peer, n % 2 == 0, body or f"message {n}",
                 groupchat=peer.startswith("public"))


def _fill(archive: Archive, spec: list[tuple[int, int]]) -> list[Entry]:
    out = []
    for n, (at, peer) in enumerate(spec):
        e = _entry(n, at, PEERS[peer])
        archive.add("me", e)
        out.append(e)
    return out


def test_entries_keep_the_order_of_arrival_even_when_a_clock_steps_back() -> None:
    a = Archive()
    a.add("me", _entry(1, 5_000))
    a.add("me", _entry(2, 3_000))  # the clock went back
    assert [(e.id, e.at_ms) for e in a.entries("me")] == [("id1", 5_000), ("id2", 5_000)]
    with pytest.raises(ArchiveError, match="taken"):
        a.add("me", _entry(1, 6_000))
    assert a.entries("you") == [] and a.query("you", Query()).items == ()


def test_filters_by_peer_and_time_and_pages_like_rsm() -> None:
    a = Archive()
    _fill(a, [(t * 1000, t % 3) for t in range(1, 31)])
    alice = a.query("me", Query(peer=PEERS[0], max=4))
    assert [e.at_ms for e in alice.items] == [3000, 6000, 9000, 12000]
    assert alice.count == 10 and not alice.complete
    nxt = a.query("me", Query(peer=PEERS[0], after=alice.last, max=4))
    assert [e.at_ms for e in nxt.items] == [15000, 18000, 21000, 24000] and nxt.first_index == 4
    last = a.query("me", Query(peer=PEERS[0], before="", max=4))
    assert [e.at_ms for e in last.items] == [21000, 24000, 27000, 30000] and not last.complete
    window = a.query("me", Query(start_ms=10_000, end_ms=12_000))
    assert [e.at_ms for e in window.items] == [10000, 11000, 12000] and window.complete
    # paging from an id the filter leaves out starts just after where it stood
    after_bob = a.query("me", Query(peer=PEERS[0], after="id0", max=2))
    assert [e.at_ms for e in after_bob.items] == [3000, 6000]
    before_bob = a.query("me", Query(peer=PEERS[0], before="id6", max=5))
    assert [e.at_ms for e in before_bob.items] == [3000, 6000] and before_bob.complete
    assert [e.id for e in a.query("me", Query(ids=("id7", "id2"))).items] == ["id2", "id7"]


@pytest.mark.parametrize("query", [Query(after="nope"), Query(before="nope"),
                                   Query(ids=("id1", "nope")),
                                   Query(after="id1", before="id2")])
def test_a_query_naming_what_is_not_there_is_refused(query: Query) -> None:
    a = Archive()
    _fill(a, [(1000, 0), (2000, 0), (3000, 0)])
    with pytest.raises(ArchiveError):
        a.query("me", query)


def test_bounded_in_entries_and_bytes_the_oldest_going_first() -> None:
    a = Archive(max_entries=3, max_bytes=10_000)
    evicted = [e.id for n in range(5) for e in a.add("me", _entry(n, n))]
    assert evicted == ["id0", "id1"] and [e.id for e in a.entries("me")] == ["id2", "id3", "id4"]
    b = Archive(max_entries=100, max_bytes=2_000)
    for n in range(5):
        b.add("me", _entry(n, n, body="x" * 600))
    assert [e.id for e in b.entries("me")] == ["id3", "id4"]
    with pytest.raises(ArchiveError):
        b.query("me", Query(after="id0"))  # evicted ids are unknown, not silently skipped
    assert b.query("me", Query(max=10_000)).items == tuple(b.entries("me"))
    assert len(Archive().query("me", Query(max=MAX_PAGE * 10)).items) == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 2)), max_size=60),
       st.integers(1, 7), st.sampled_from([None, *PEERS]))
def test_paging_forwards_or_backwards_yields_every_match_once_in_order(
        spec: list[tuple[int, int]], size: int, peer: str | None) -> None:
    a = Archive()
    _fill(a, spec)
    expected = [e.id for e in a.entries("me") if peer is None or e.peer == peer]
    got: list[str] = []
    page = a.query("me", Query(peer=peer, max=size))
    while True:
        got += [e.id for e in page.items]
        assert page.count == len(expected)
        if page.complete or not page.items:
            break
        page = a.query("me", Query(peer=peer, after=page.last, max=size))
    assert got == expected
    back: list[str] = []
    page = a.query("me", Query(peer=peer, before="", max=size))
    while True:
        back = [e.id for e in page.items] + back
        if page.complete or not page.items:
            break
        page = a.query("me", Query(peer=peer, before=page.first, max=size))
    assert back == expected
