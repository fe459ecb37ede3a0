"""PEERS entries with the shard prefixes each address's node carries (docs/sharding.md,
item 5): the wire form and its bounds, the plain form still read and still sent to a
version-1 peer, and the address book's memory of who carries what."""

from __future__ import annotations

import os
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import gossip as g
from bridge.core.addrbook import CLAIMED, DIALLED, HEARD, AddrBook
from bridge.core.errors import (
    LocalProtocolError,
    MalformedError,
    RemoteProtocolError,
    TruncatedError,
)
from bridge.core.gossip_wire import (
    MAX_PEERS,
    PEERS_CARRIED,
    FrameType,
    Hello,
    Peers,
    encode,
    parse,
)
from bridge.core.shards import ALL, MAX_PREFIXES, prefix

LOW, HIGH, Q2 = prefix(0, 1), prefix(1, 1), prefix(2, 2)
A, B, C = "192.0.2.1:45069", "198.51.100.7:1", "[2001:db8::1]:9"


def entry(addr: str, prefixes: list[tuple[int, int]] | None) -> bytes:
    raw = bytes([len(addr)]) + addr.encode()
    if prefixes is None:
        return raw
    return raw + bytes([len(prefixes)]) + b"".join(struct.pack(">BH", d, s) for d, s in prefixes)


def frame(count: int, *entries: bytes) -> bytes:
    return bytes([FrameType.PEERS, count]) + b"".join(entries)


def test_the_plain_form_is_unchanged_and_still_read():
    plain = frame(2, entry(A, None), entry(B, None))
    assert encode(Peers((A, B))) == plain
    assert parse(plain) == Peers((A, B), None)


def test_entries_carry_their_prefixes_or_say_they_are_not_known():
    msg = Peers((A, B, C), ((LOW,), (), (ALL,)))
    raw = encode(msg)
    assert raw == frame(PEERS_CARRIED | 3, entry(A, [(1, 0)]), entry(B, []), entry(C, [(0, 0)]))
    assert parse(raw) == msg
    most = Peers((A,), (tuple(prefix(v, 4) for v in range(MAX_PREFIXES)),))
    assert parse(encode(most)) == most
    assert parse(frame(PEERS_CARRIED)) == Peers((), ())


@pytest.mark.parametrize(("raw", "error"), [
    (frame(PEERS_CARRIED | (MAX_PEERS + 1)), MalformedError),  # too many entries
    (frame(PEERS_CARRIED | 1, entry(A, None)), TruncatedError),  # no count after the address
    (frame(PEERS_CARRIED | 1, entry(A, [(1, 0)])[:-1]), MalformedError),  # short a byte
    (frame(PEERS_CARRIED | 1, entry(A, None) + bytes([MAX_PREFIXES + 1])
           + bytes(3 * (MAX_PREFIXES + 1))), MalformedError),  # more prefixes than a node has
    (frame(PEERS_CARRIED | 1, entry(A, [(1, 0x8000), (1, 0)])), MalformedError),  # unsorted
    (frame(PEERS_CARRIED | 1, entry(A, [(0, 0), (1, 0x8000)])), MalformedError),  # nested
    (frame(PEERS_CARRIED | 1, entry(A, [(1, 0x4000)])), MalformedError),  # bits past depth
    (frame(PEERS_CARRIED | 1, entry(A, [(17, 0)])), MalformedError),  # deeper than a key
    (frame(PEERS_CARRIED | 1, entry(A, [(1, 0)]) + b"\x00"), MalformedError),  # trailing
    (frame(PEERS_CARRIED | 2, entry(A, [(1, 0)])), TruncatedError),  # an entry missing
    (frame(1, entry(A, [(1, 0)])), MalformedError),  # prefixes without the flag
])
def test_a_malformed_entry_is_a_protocol_violation(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(raw)


@given(st.binary(max_size=400))
def test_any_peers_body_parses_or_is_refused_as_remote(body: bytes) -> None:
    for count in (body[:1], bytes([PEERS_CARRIED | (body[0] & 7)]) if body else b""):
        try:
            msg = parse(bytes([FrameType.PEERS]) + count + body[1:])
        except RemoteProtocolError:
            continue
        assert isinstance(msg, Peers) and parse(encode(msg)) == msg


def test_our_own_frame_is_checked_before_it_leaves():
    with pytest.raises(LocalProtocolError):
        Peers((A, B), ((LOW,),))  # one list per address
    with pytest.raises(LocalProtocolError):
        Peers((A,), ((HIGH, LOW),))  # not canonical


def linked(version: int) -> tuple[g.Link, int]:
    """Our link, its peer's HELLO of ``version`` received and ours sent."""
    now = int(time.time())
    ours = g.Link(g.LocalInfo(os.urandom(16), 4), now)
    ours.hello(now)
    ours.receive(encode(Hello(version, 4, now, os.urandom(16), False, "")), now)
    assert ours.active
    return ours, now


def test_prefixes_go_to_a_version_2_peer_and_a_plain_list_to_version_1():
    v2, now = linked(2)
    got = parse(v2.peers([A, B], [(HIGH,), ()]))
    assert got == Peers((A, B), ((HIGH,), ()))
    v1, _ = linked(1)
    assert parse(v1.peers([A, B], [(HIGH,), ()])) == Peers((A, B))
    # what the link hands up: the prefixes as they came, or none said
    (heard,) = v2.receive(encode(Peers((C,), ((Q2,),))), now)
    assert heard == g.PeersHeard((C,), ((Q2,),))
    (plain,) = v2.receive(encode(Peers((C,))), now)
    assert plain == g.PeersHeard((C,), None)


def test_the_book_keeps_what_the_best_source_said():
    book = AddrBook(os.urandom(32))
    book.add(A, "203.0.113.9", 1.0, shards=(LOW,))  # second-hand: taken
    e = book.entry(A)
    assert e is not None and (e.shards, e.shards_from) == ((LOW,), HEARD)
    book.add(A, "203.0.113.9", 2.0, shards=(HIGH,))  # a later PEERS entry: taken
    assert e.shards == (HIGH,)
    book.add(A, "192.0.2.1", 3.0, first_hand=True, shards=(Q2,))  # a HELLO naming it
    book.add(A, "203.0.113.9", 4.0, shards=(ALL,))  # a PEERS entry cannot change that
    book.add(A, "203.0.113.9", 5.0)  # nor does one that says nothing
    assert (e.shards, e.shards_from) == ((Q2,), CLAIMED)
    book.good(B, 6.0, (HIGH,))  # dialled, and its HELLO said so
    book.add(B, "203.0.113.9", 7.0, shards=(LOW,))
    book.add(B, "203.0.113.66", 8.0, first_hand=True, shards=(LOW,))  # anyone may claim B
    tried = book.entry(B)
    assert tried is not None and (tried.shards, tried.shards_from) == ((HIGH,), DIALLED)
    book.good(B, 9.0, (LOW,))  # dialled again: it carries something else now
    assert (tried.shards, tried.shards_from) == ((LOW,), DIALLED)
    book.add(C, "203.0.113.9", 8.0)  # nothing known
    assert book.carriers(HIGH) == [A]  # Q2 lies in the high half
    assert book.carriers(prefix(0, 2)) == [B]
    assert sorted(book.carriers(ALL)) == sorted([A, B])

