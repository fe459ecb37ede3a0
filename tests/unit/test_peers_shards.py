"""PEERS entries with the shard prefixes each address's node carries (docs/sharding.md,
item 5): the wire form and its bounds, the plain form still read and still sent to a
version-1 peer, and the address book's memory of who carries what; the lookup frames
FIND_SHARD and SHARD_PEERS, their bounds and allowance."""

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
from bridge.core.gossip_events import UnrequestedError
from bridge.core.gossip_wire import (
    MAX_PEERS,
    PEERS_CARRIED,
    FindShard,
    FrameType,
    Hello,
    Peers,
    ShardPeers,
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



# --- the lookup frames: FIND_SHARD and its answer, SHARD_PEERS ---------------------------


def test_lookup_frames_round_trip():
    assert parse(encode(FindShard(Q2))) == FindShard(Q2)
    assert encode(FindShard(HIGH)) == bytes([FrameType.FIND_SHARD, 1, 0x80, 0])
    answer = ShardPeers(Q2, (A, B), ((HIGH,), (ALL,)))
    assert parse(encode(answer)) == answer
    assert parse(encode(ShardPeers(Q2, (), ()))) == ShardPeers(Q2, (), ())


@pytest.mark.parametrize(("raw", "error"), [
    (bytes([FrameType.FIND_SHARD, 1, 0x80]), MalformedError),  # short
    (bytes([FrameType.FIND_SHARD, 1, 0x80, 0, 0]), MalformedError),  # a byte too many
    (bytes([FrameType.FIND_SHARD, 1, 0x40, 0]), MalformedError),  # bits past the depth
    (bytes([FrameType.SHARD_PEERS, 1, 0x80, 0]), MalformedError),  # no entries at all
    (bytes([FrameType.SHARD_PEERS, 1, 0x80, 0]) + frame(1, entry(A, None))[1:],
     MalformedError),  # entries without their prefixes
    (bytes([FrameType.SHARD_PEERS, 1, 0x80, 0]) + frame(PEERS_CARRIED | 1, entry(A, []))[1:],
     MalformedError),  # a carrier of nothing known
    (bytes([FrameType.SHARD_PEERS, 1, 0x80, 0])
     + frame(PEERS_CARRIED | 1, entry(A, [(1, 0)]))[1:], MalformedError),  # the other half
])
def test_a_malformed_lookup_frame_is_a_protocol_violation(raw: bytes,
                                                          error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(raw)


def test_only_an_answer_to_our_own_question_is_taken():
    link, now = linked(2)
    answer = encode(ShardPeers(HIGH, (A,), ((Q2,),)))
    with pytest.raises(UnrequestedError):
        link.receive(answer, now)  # never asked
    assert parse(link.find_shard(HIGH, now)) == FindShard(HIGH)
    (heard,) = link.receive(answer, now)
    assert heard == g.ShardPeersHeard(HIGH, (A,), ((Q2,),))
    with pytest.raises(UnrequestedError):
        link.receive(answer, now)  # answered once
    link.find_shard(LOW, now)
    with pytest.raises(UnrequestedError):  # too late: forgotten
        link.receive(encode(ShardPeers(LOW, (), ())), now + link.budgets.want_ttl + 1)
    v1, _ = linked(1)
    with pytest.raises(LocalProtocolError):
        v1.find_shard(HIGH, now)  # a version-1 peer knows no lookup


def test_a_link_remembers_a_bounded_number_of_questions():
    link, now = linked(2)
    cap = link.budgets.max_finds
    for v in range(cap + 1):
        link.find_shard(prefix(v, 8), now)
    assert len(link.finding) == cap and prefix(0, 8) not in link.finding


def test_questions_are_answered_within_an_allowance_then_a_flood():
    link, now = linked(2)
    asked = encode(FindShard(HIGH))
    events = [e for _ in range(int(link.budgets.find_burst)) for e in link.receive(asked, now)]
    assert 0 < len(events) < link.budgets.find_burst  # half a burst, then ignored
    assert all(e == g.ShardAsked(HIGH) for e in events)
    with pytest.raises(g.FloodError):
        for _ in range(int(link.budgets.find_burst * 4)):
            link.receive(asked, now)


def test_an_answer_names_only_carriers_of_the_prefix():
    link, _ = linked(2)
    sent = parse(link.shard_peers(HIGH, [A, B, C], [(LOW,), (Q2,), (ALL,)]))
    assert sent == ShardPeers(HIGH, (B, C), ((Q2,), (ALL,)))


def test_the_book_vouches_only_for_what_peer_exchange_would_pass_on():
    book = AddrBook(os.urandom(32))
    book.add(A, "203.0.113.9", 1.0, shards=(HIGH,))  # heard second-hand
    book.add(B, "198.51.100.7", 2.0, first_hand=True, shards=(HIGH,))  # its own HELLO
    book.good(C, 3.0, (ALL,))  # reached
    assert sorted(book.carriers(Q2)) == sorted([A, B, C])
    assert sorted(book.carriers(Q2, vouched=True)) == sorted([B, C])
