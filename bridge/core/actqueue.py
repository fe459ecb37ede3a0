"""The outgoing throttle for acts and presences: one envelope per key per interval.

Each act (correction, reaction, retraction, read marker) or presence sent is an
envelope with its own proof of work, so what goes to one contact leaves at most
once per ``interval``. Items wait in slots: an item offered for a slot that
already waits replaces it in place (the latest correction of a message, the
latest set of reactions to it, the latest read marker or presence wins), and a
key holds at most ``max_pending`` slots: past that an offer is refused
(``QueueFullError``), never silently dropped. Pure: the caller passes the clock and
runs one flusher per key while ``step`` says there is more to do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bridge.core.chatstate import Done, Wait  # one pair of step types for both throttles
from bridge.core.errors import UserError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
MAX_KEYS = 4096  # contacts with something queued or recently sent
MAX_PENDING = 32  # slots waiting per contact


class QueueFullError(UserError):
    """Too many acts wait for one contact; this one is not sent."""


@dataclass(slots=True)
class _Line(Generic[T]):
    pending: OrderedDict[Hashable, T] = field(default_factory=OrderedDict)
    next_at: float = 0.0  # the clock time the next item may leave
    busy: bool = False  # a flusher runs for this key


@dataclass(frozen=True, slots=True)
class Send(Generic[T]):
    item: T


class ActQueue(Generic[K, T]):
    def __init__(self, interval: float, max_pending: int = MAX_PENDING,
                 max_keys: int = MAX_KEYS) -> None:
        self.interval = interval
        self.max_pending = max_pending
        self.max_keys = max_keys
        self._lines: dict[K, _Line[T]] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def pending(self, key: K) -> int:
        line = self._lines.get(key)
        return len(line.pending) if line is not None else 0

    def offer(self, key: K, slot: Hashable, item: T, now: float) -> bool:
        """Queue ``item`` in ``slot``; True when the caller must start a flusher for
        ``key``. QueueFullError when the key has ``max_pending`` other slots waiting,
        or ``max_keys`` keys are busy."""
        line = self._lines.get(key)
        if line is None:
            if len(self._lines) >= self.max_keys:
                self._lines = {k: v for k, v in self._lines.items()
                               if v.busy or v.pending or v.next_at > now}
                if len(self._lines) >= self.max_keys:
                    raise QueueFullError("too many contacts have acts waiting; try again soon")
            line = self._lines[key] = _Line()
        if slot not in line.pending and len(line.pending) >= self.max_pending:
            raise QueueFullError(f"{self.max_pending} acts already wait for this contact "
                                 "(one leaves per second or so); this one was not sent")
        line.pending[slot] = item  # a replaced slot keeps its place
        if line.busy:
            return False
        line.busy = True
        return True

    def step(self, key: K, now: float) -> Wait | Send[T] | Done:
        """What the flusher for ``key`` does next; after ``Done`` it ends."""
        line = self._lines.get(key)
        if line is None:
            return Done()
        if not line.pending:
            line.busy = False
            return Done()
        if now < line.next_at:
            return Wait(line.next_at - now)
        _, item = line.pending.popitem(last=False)
        line.next_at = now + self.interval
        return Send(item)

    def stopped(self, key: K) -> None:
        """The flusher for ``key`` ended early (cancelled): a new one may start."""
        line = self._lines.get(key)
        if line is not None:
            line.busy = False


__all__ = ["ActQueue", "Done", "QueueFullError", "Send", "Wait"]
