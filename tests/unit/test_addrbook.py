"""The address book: bounded buckets a flooding source cannot outgrow, tried before
heard-of, and the scope of an address."""

from __future__ import annotations

import random

import pytest

from bridge.core.addrbook import (
    BUCKET_SIZE,
    MAX_ADDRESSES,
    NEW_PER_SOURCE,
    TERRIBLE_ATTEMPTS,
    AddrBook,
    Scope,
    group,
    scope_of,
)

KEY = bytes(range(32))


def junk(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
            f"{rng.randrange(1, 255)}:{rng.randrange(1, 65536)}" for _ in range(n)]


def test_one_source_fills_only_its_few_buckets() -> None:
    book = AddrBook(KEY)
    stored = sum(book.add(a, "198.51.100.7", 0.0) for a in junk(10_000))
    assert len(book) == stored <= NEW_PER_SOURCE * BUCKET_SIZE
    used = {book.where[e.addr][1] for e in book.entries()}
    assert len(used) <= NEW_PER_SOURCE


def test_another_source_still_gets_in_after_a_flood() -> None:
    book = AddrBook(KEY)
    for a in junk(5_000):
        book.add(a, "198.51.100.7", 0.0)
    honest = [f"203.{i}.0.1:45069" for i in range(20)]
    got = [book.add(a, f"192.{i}.0.9", 1.0) for i, a in enumerate(honest)]
    assert sum(got) >= 16  # sources of other /16s reach other buckets (4 of 64 are full)


def test_the_whole_book_is_bounded_whatever_the_sources() -> None:
    book = AddrBook(KEY)
    for i, a in enumerate(junk(40_000)):
        book.add(a, f"{i % 250 + 1}.{i % 199}.0.1", 0.0)
    assert len(book) <= MAX_ADDRESSES
    assert all(len(b) <= BUCKET_SIZE for b in (*book.new, *book.tried))


def test_buckets_depend_on_the_secret_key() -> None:
    a, b = AddrBook(KEY), AddrBook(bytes(32))
    addrs = junk(50)
    assert ([a.new_bucket(x, "198.51.100.7") for x in addrs]
            != [b.new_bucket(x, "198.51.100.7") for x in addrs])


def test_a_full_bucket_keeps_what_it_has_until_an_entry_turns_terrible() -> None:
    book = AddrBook(KEY)
    for a in junk(5_000):
        book.add(a, "198.51.100.7", 0.0)
    full = next(b for b in book.new if len(b) == BUCKET_SIZE)
    victim = full[0].addr
    newcomer = next(a for a in junk(50_000, seed=2)
                    if book.new_bucket(a, "198.51.100.7") == book.where[victim][1])
    assert not book.add(newcomer, "198.51.100.7", 1.0)
    for _ in range(TERRIBLE_ATTEMPTS):
        book.attempt(victim, 2.0)  # dialled, never answered
    assert book.add(newcomer, "198.51.100.7", 3.0)
    assert victim not in book and newcomer in book


def test_good_moves_to_tried_and_offers_prefer_it_never_second_hand() -> None:
    book = AddrBook(KEY)
    rng = random.Random(0)
    second = junk(40)
    for a in second:
        book.add(a, "198.51.100.7", 0.0)
    book.add("203.0.113.5:1", "203.0.113.5", 0.0, first_hand=True)
    book.good(second[0], 1.0)
    assert book.counts()[1] == 1
    offered = book.offer(32, set(), rng)
    assert offered[0] == second[0]
    assert set(offered) == {second[0], "203.0.113.5:1"}  # no second-hand junk
    assert book.offer(32, {second[0]}, rng) == ["203.0.113.5:1"]


def test_a_full_tried_bucket_sends_its_stalest_back_to_new() -> None:
    book = AddrBook(KEY)
    addrs = [a for a in junk(20_000) if book.tried_bucket(a) == 0][: BUCKET_SIZE + 1]
    for t, a in enumerate(addrs):
        book.good(a, float(t))
    assert len(book.tried[0]) == BUCKET_SIZE
    assert addrs[0] in book and book.where[addrs[0]][0] is False  # back in new


def test_select_gives_each_bucket_even_odds() -> None:
    book = AddrBook(KEY)
    for a in junk(3_000):
        book.add(a, "198.51.100.7", 0.0)  # a flood: a few full buckets
    honest = "192.0.2.44:45069"
    book.add(honest, "192.0.2.1", 0.0)
    rng = random.Random(5)
    picks = [book.select(book.entries(), rng) for _ in range(2_000)]
    share = sum(p is not None and p.addr == honest for p in picks) / len(picks)
    assert share > 1 / (NEW_PER_SOURCE + 1) / 2  # one bucket of five, not one entry of 65


@pytest.mark.parametrize(("host", "scope"), [
    ("8.8.8.8", Scope.GLOBAL), ("[2001:4860::8888]", Scope.GLOBAL),
    ("10.1.2.3", Scope.PRIVATE), ("172.16.0.1", Scope.PRIVATE), ("192.168.1.5", Scope.PRIVATE),
    ("100.64.0.1", Scope.PRIVATE), ("[fd00::1]", Scope.PRIVATE), ("printer.local", Scope.PRIVATE),
    ("169.254.1.1", Scope.LINK_LOCAL), ("[fe80::1]", Scope.LINK_LOCAL),
    ("127.5.6.7", Scope.LOOPBACK), ("[::1]", Scope.LOOPBACK), ("localhost", Scope.LOOPBACK),
    ("[::ffff:127.0.0.1]", Scope.LOOPBACK), ("[::ffff:10.0.0.1]", Scope.PRIVATE),
    ("192.0.2.7", Scope.RESERVED), ("224.0.0.1", Scope.RESERVED), ("0.0.0.0", Scope.RESERVED),
    ("198.18.0.1", Scope.RESERVED), ("[ff02::1]", Scope.RESERVED),
    ("node.example.org", Scope.NAME), ("a" * 56 + ".onion", Scope.ONION),
])
def test_scope(host: str, scope: Scope) -> None:
    assert scope_of(host) is scope


def test_groups() -> None:
    assert group("203.0.113.5") == group("203.0.7.9") != group("203.1.113.5")
    assert group("[2001:db8:1::1]") == group("[2001:db8:ffff::2]") != group("[2001:db9::1]")
    assert group("[::ffff:203.0.113.5]") == group("203.0.1.1")
    assert group("a.example.org") == group("b.example.org") != group("example.net")
