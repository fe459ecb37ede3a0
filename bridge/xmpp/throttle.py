"""Login throttling for the c2s listener: per source address and per account.

Rules:
- Every failed login adds to two counters that decay over ``window``: one for
  the source IP, one for the account name tried.
- A failure is answered only after a delay that doubles with each recent
  failure past ``free_failures`` (the larger of the two counters), capped at
  ``max_delay``. A correct password is never delayed by the *source* counter:
  every local program shares 127.0.0.1, so someone guessing must not slow
  down the other people logging in from the same machine.
- An account with ``lockout_after`` recent failures is locked for
  ``lockout_seconds``; while locked every attempt on it fails without the
  password being checked. Other accounts are not affected.
- Memory is bounded: at most ``max_entries`` counters, the stalest dropped.

The clock is passed in so tests can move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Counter:
    score: float
    at: float
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int = 3
    base_delay: float = 0.5  # seconds, for the first failure past the free ones
    max_delay: float = 8.0
    lockout_after: int = 50
    lockout_seconds: float = 300.0
    window: float = 900.0  # a counter halves every window/4 without failures
    max_entries: int = 10_000


class LoginThrottle:
    def __init__(
        self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._sources: OrderedDict[str, _Counter] = OrderedDict()
        self._accounts: OrderedDict[str, _Counter] = OrderedDict()

    def _get(self, table: OrderedDict[str, _Counter], key: str) -> _Counter:
        now = self._clock()
        counter = table.get(key)
        if counter is None:
            counter = _Counter(0.0, now)
            table[key] = counter
            while len(table) > self.policy.max_entries:
                table.popitem(last=False)
        else:
            half_life = self.policy.window / 4
            counter.score *= 0.5 ** ((now - counter.at) / half_life)
            counter.at = now
            table.move_to_end(key)
        return counter

    def locked_for(self, account: str) -> float:
        """Seconds the account stays locked (0 if it is not)."""
        counter = self._accounts.get(account.lower())
        if counter is None:
            return 0.0
        return max(0.0, counter.locked_until - self._clock())

    def failure(self, source: str, account: str) -> float:
        """Record a failed login; returns how long to wait before saying so."""
        policy = self.policy
        src = self._get(self._sources, source)
        acc = self._get(self._accounts, account.lower())
        src.score += 1
        acc.score += 1
        if acc.score >= policy.lockout_after and acc.locked_until <= self._clock():
            acc.locked_until = self._clock() + policy.lockout_seconds
        excess = max(src.score, acc.score) - policy.free_failures
        if excess <= 0:
            return 0.0
        return min(policy.max_delay, policy.base_delay * 2 ** min(excess - 1, 32))

    def success(self, source: str, account: str) -> None:
        """A right password clears the account's record (not the source's)."""
        self._accounts.pop(account.lower(), None)
