"""The outgoing chat-state throttle (XEP-0085 over the network, opt-in).

Each chat state sent is an envelope with its own proof of work, so states to one
contact leave at most once per ``interval``; states offered meanwhile collapse
to the latest, a state equal to the last one sent is not sent again, and a
message (which implies "active") cancels what waits. Pure: the caller passes the
clock and runs one flusher per key while ``step`` says there is more to do.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bridge.core.records import ChatState

K = TypeVar("K", bound=Hashable)
MAX_KEYS = 4096  # contacts with state kept; idle ones are forgotten past this


@dataclass(slots=True)
class _Line:
    pending: ChatState | None = None  # the latest state not yet sent
    last: ChatState | None = None  # what the contact last learnt from us
    next_at: float = 0.0  # the clock time the next state may leave
    busy: bool = False  # a flusher runs for this key


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class Send:
    state: ChatState


@dataclass(frozen=True, slots=True)
class Done:
    pass


Step = Wait | Send | Done


class ChatStateThrottle(Generic[K]):
    def __init__(self, interval: float, max_keys: int = MAX_KEYS) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._lines: dict[K, _Line] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def _line(self, key: K, now: float) -> _Line:
        line = self._lines.get(key)
        if line is None:
            if len(self._lines) >= self.max_keys:
                self._forget_idle(now)
            line = self._lines[key] = _Line()
        return line

    def _forget_idle(self, now: float) -> None:
        """Drop keys with nothing waiting and no flusher (their dedupe state goes:
        at worst one repeated state is sent)."""
        self._lines = {k: v for k, v in self._lines.items()
                       if v.busy or v.pending is not None or v.next_at > now}

    def offer(self, key: K, state: ChatState, now: float) -> bool:
        """Queue ``state``; True when the caller must start a flusher for ``key``."""
        line = self._line(key, now)
        line.pending = state
        if line.busy:
            return False
        line.busy = True
        return True

    def message_sent(self, key: K, now: float) -> None:
        """A message went to ``key``: it implies active, and drops what waits."""
        line = self._line(key, now)
        line.pending, line.last = None, ChatState.ACTIVE

    def step(self, key: K, now: float) -> Step:
        """What the flusher for ``key`` does next; after ``Done`` it ends."""
        line = self._lines.get(key)
        if line is None:
            return Done()
        if line.pending is not None and now < line.next_at:
            return Wait(line.next_at - now)
        state, line.pending = line.pending, None
        if state is None or state == line.last:
            line.busy = False
            return Done()
        line.last = state
        line.next_at = now + self.interval
        return Send(state)

    def failed(self, key: K) -> None:
        """The state last sent did not leave: the next one is sent even if equal."""
        line = self._lines.get(key)
        if line is not None:
            line.last = None

    def stopped(self, key: K) -> None:
        """The flusher for ``key`` ended early (cancelled): a new one may start."""
        line = self._lines.get(key)
        if line is not None:
            line.busy = False
