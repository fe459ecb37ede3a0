"""Contact requests: what strangers wrote first, held in RAM until the person
answers, within a budget a stranger cannot stretch.

One queue per local identity, bounded in senders, in bytes and in messages per
sender. When it is full, the request worth least goes: the one whose best
envelope carries the least proof of work per byte (its sender paid least for the
space it takes), then the oldest. A newcomer worth no more than that one is
refused instead, so flooding with cheap envelopes cannot push out a request
someone paid for. Pure: the caller says what each message is worth and when.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_SENDERS = 64  # requests waiting per identity
MAX_BYTES = 2 * 1024 * 1024  # their messages' envelope bytes per identity
MAX_PER_SENDER = 20  # messages held per request


def work_per_byte(work_bits: int, size: int) -> float:
    """log2 of (expected hashes of the proof of work / envelope bytes)."""
    return work_bits - math.log2(max(size, 1))


@dataclass(frozen=True, slots=True)
class Held(Generic[T]):
    item: T
    size: int  # envelope bytes
    expiry: int  # the envelope's: the message is gone from the network after it


@dataclass(slots=True)
class Request(Generic[T]):
    sender: str
    first_at: int  # when the first message arrived (the clock the caller uses)
    score: float  # work per byte of the best message so far
    held: list[Held[T]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(h.size for h in self.held)

    @property
    def items(self) -> list[T]:
        return [h.item for h in self.held]


@dataclass(frozen=True, slots=True)
class Offered(Generic[T]):
    kept: bool  # the message is held
    new: bool  # its sender is a new request
    evicted: tuple[Request[T], ...] = ()  # requests pushed out to make room


class RequestQueue(Generic[T]):
    def __init__(self, *, max_senders: int = MAX_SENDERS, max_bytes: int = MAX_BYTES,
                 max_per_sender: int = MAX_PER_SENDER) -> None:
        self.max_senders = max_senders
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self._requests: dict[str, Request[T]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._requests)

    def __contains__(self, sender: object) -> bool:
        return sender in self._requests

    def __iter__(self) -> Iterator[Request[T]]:
        return iter(list(self._requests.values()))

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, sender: str) -> Request[T] | None:
        return self._requests.get(sender)

    def offer(self, sender: str, item: T, *, size: int, expiry: int, score: float,
              now: int) -> Offered[T]:
        """Hold ``item`` (``size`` envelope bytes worth ``score``) from ``sender``."""
        req = self._requests.get(sender)
        if size > self.max_bytes or (req is not None and len(req.held) >= self.max_per_sender):
            return Offered(False, False)
        worth = max(score, req.score) if req is not None else score
        first_at = req.first_at if req is not None else now
        # Room: push out requests worth less than this one, cheapest first.
        victims: list[Request[T]] = []

        def fits() -> bool:
            senders = len(self._requests) - len(victims) + (req is None)
            held = self._bytes - sum(v.size for v in victims) + size
            return senders <= self.max_senders and held <= self.max_bytes

        while not fits():
            victim = min((r for r in self._requests.values()
                          if r.sender != sender and r not in victims),
                         key=lambda r: (r.score, r.first_at), default=None)
            if victim is None or (victim.score, -victim.first_at) >= (worth, -first_at):
                return Offered(False, False)  # worth no more than what is held: refused
            victims.append(victim)
        for victim in victims:
            self._drop(victim.sender)
        if req is None:
            req = self._requests[sender] = Request(sender, now, score)
        req.held.append(Held(item, size, expiry))
        req.score = worth
        self._bytes += size
        return Offered(True, len(req.held) == 1, tuple(victims))

    def _drop(self, sender: str) -> Request[T] | None:
        req = self._requests.pop(sender, None)
        if req is not None:
            self._bytes -= req.size
        return req

    def pop(self, sender: str) -> Request[T] | None:
        """The person answered ``sender``'s request (accepted, blocked or dismissed)."""
        return self._drop(sender)

    def purge(self, now: int) -> list[Request[T]]:
        """Forget messages whose envelopes expired; the requests left with none."""
        emptied = []
        for req in list(self._requests.values()):
            live = [h for h in req.held if h.expiry > now]
            if len(live) != len(req.held):
                self._bytes -= req.size - sum(h.size for h in live)
                req.held = live
            if not live:
                emptied.append(req)
                del self._requests[req.sender]
        return emptied
