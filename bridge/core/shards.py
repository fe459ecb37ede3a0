"""Shards: which envelopes a node carries (docs/sharding.md).

Every envelope's shard key is the first two bytes of its recipient tag (a version-2
tag starts with the recipient's 16-bit shard key, ``tags.shard_key``; a version-1
tag's first two bytes rotate with it). A node carries a set of **prefixes**: a
prefix of depth k (0 ≤ k ≤ 16) holds every shard key whose first k bits are its
value; depth 0 holds everything. A prefix is written ``value/depth`` (``"1/1"``: the
second half of the shard keys; ``"0/0"``: all of them).

A carried set is canonical when it is sorted, holds at most ``MAX_PREFIXES`` prefixes
and none of them inside another; HELLO (version 2) carries it so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from bridge.core.errors import LocalProtocolError, MalformedError

SHARD_KEY_SIZE: Final = 2
KEY_BITS: Final = 16
MAX_PREFIXES: Final = 16
TAG_OFFSET: Final = 2  # the recipient tag's place in an envelope's header (envelope.md §2)


@dataclass(frozen=True, slots=True, order=True)
class Prefix:
    """The shard keys whose first ``depth`` bits are those of ``start`` (a 16-bit key
    whose other bits are zero): the range ``[start, start + 2^(16 − depth))``."""

    start: int
    depth: int

    def __post_init__(self) -> None:
        if not (0 <= self.depth <= KEY_BITS and 0 <= self.start < 1 << KEY_BITS
                and self.start & ((1 << (KEY_BITS - self.depth)) - 1) == 0):
            raise LocalProtocolError(f"bad shard prefix {self.start:#06x}/{self.depth}")

    @property
    def end(self) -> int:
        """One past the last shard key under the prefix."""
        return self.start + (1 << (KEY_BITS - self.depth))

    @property
    def value(self) -> int:
        """The prefix's own ``depth`` bits, as a number (``"value/depth"``)."""
        return self.start >> (KEY_BITS - self.depth)

    def holds(self, shard: int) -> bool:
        return self.start <= shard < self.end

    def contains(self, other: Prefix) -> bool:
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"{self.value}/{self.depth}"


ALL: Final = Prefix(0, 0)
EVERYTHING: Final = (ALL,)


def prefix(value: int, depth: int) -> Prefix:
    """The prefix ``value/depth`` (``value`` < 2^depth)."""
    if not 0 <= depth <= KEY_BITS or not 0 <= value < 1 << depth:
        raise LocalProtocolError(f"bad shard prefix {value}/{depth}")
    return Prefix(value << (KEY_BITS - depth), depth)


def parse_prefix(text: str) -> Prefix:
    """``"value/depth"``, both decimal; ValueError on anything else."""
    v, sep, d = text.strip().partition("/")
    if not sep or not v.isdigit() or not d.isdigit() or len(v) > 5 or len(d) > 2:
        raise ValueError(f"a shard prefix is written value/depth, not {text!r}")
    try:
        return prefix(int(v), int(d))
    except LocalProtocolError as e:
        raise ValueError(str(e)) from None


def of_key(shard: int, depth: int) -> Prefix:
    """The prefix of ``depth`` bits that holds the shard key ``shard``."""
    return prefix(shard >> (KEY_BITS - depth), depth)


def canonical(prefixes: Iterable[Prefix]) -> tuple[Prefix, ...]:
    """Sorted, duplicates and prefixes inside another dropped; at most ``MAX_PREFIXES``."""
    out: list[Prefix] = []
    for p in sorted(set(prefixes), key=lambda p: (p.start, p.depth)):
        if out and out[-1].contains(p):
            continue
        out.append(p)
    if not out or len(out) > MAX_PREFIXES:
        raise LocalProtocolError(f"a node carries 1 to {MAX_PREFIXES} shard prefixes")
    return tuple(out)


def check_canonical(prefixes: tuple[Prefix, ...]) -> None:
    """MalformedError unless ``prefixes`` is already canonical (a peer's HELLO)."""
    if not 1 <= len(prefixes) <= MAX_PREFIXES:
        raise MalformedError(f"{len(prefixes)} shard prefixes; 1 to {MAX_PREFIXES}")
    for a, b in pairwise(prefixes):
        if b.start < a.end:  # out of order, repeated, or inside the one before
            raise MalformedError("shard prefixes not sorted or not disjoint")


def holds(prefixes: tuple[Prefix, ...], shard: int) -> bool:
    return any(p.holds(shard) for p in prefixes)


def overlap(a: Prefix, b: Prefix) -> Prefix | None:
    """The shard keys both hold: the longer prefix if one holds the other, else None."""
    if a.contains(b):
        return b
    if b.contains(a):
        return a
    return None


def overlaps(ours: tuple[Prefix, ...], theirs: tuple[Prefix, ...]) -> list[Prefix]:
    """Every prefix held by both sets (disjoint, sorted)."""
    found = {o for a in ours for b in theirs if (o := overlap(a, b)) is not None}
    return sorted(found, key=lambda p: (p.start, p.depth))


def within(prefixes: tuple[Prefix, ...], p: Prefix) -> bool:
    """``p`` lies inside one of ``prefixes``."""
    return any(q.contains(p) for q in prefixes)


def shard_of_tag(tag: bytes) -> int:
    return int.from_bytes(tag[:SHARD_KEY_SIZE], "big")


def shard_of_raw(raw: bytes) -> int:
    """An envelope's shard key, read from its header (two bytes; no parse)."""
    return int.from_bytes(raw[TAG_OFFSET:TAG_OFFSET + SHARD_KEY_SIZE], "big")
