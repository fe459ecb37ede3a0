"""Store economics: a spammer with 10× an honest sender's work cannot push the honest
sender's messages out of a full store.

Pure and fast: real envelopes with real proofs (at a low base difficulty, the
same rule at every base), a real RAM store, a simulated clock. The store is full
before the honest sender starts — of week-long envelopes at the minimum price,
the attack that under "earliest expiry first" locked every two-day message out
for a week. Then twelve two-day messages from one conversation are sent ten
minutes apart, each at exactly the minimum its size and life require; the
attacker spends ten times their total work, in every shape it may choose:
two-day or week-long lifetimes, small or large envelopes, paying the minimum or
2×/4× more per byte-second, all before, between or after the honest messages,
under fresh tags or one. The honest messages occupy a twentieth of the store.
"""

from __future__ import annotations

import itertools
import os

import pytest

from bridge.core import pow
from bridge.core.checks import pow_bits_required
from bridge.core.envelope import Envelope
from bridge.store.memory import MemoryStore
from tests.gossip_support import LOW_BITS
from tests.store_support import priced, work

NOW = 1_800_000_000
DAY = 86_400
HONEST_N = 12
ATTACKER_FACTOR = 10
STORE_TIMES_HONEST = 20

PAIR_TAG = os.urandom(16)  # the conversation's tag: only its two ends can compute it
HONEST = [priced(NOW + 600 * i, ttl=2 * DAY, tag=PAIR_TAG) for i in range(HONEST_N)]
HONEST_WORK = sum(work(e) for e in HONEST)
HONEST_BYTES = sum(len(e.raw) for e in HONEST)
STORE_BYTES = STORE_TIMES_HONEST * HONEST_BYTES
FILL: list[Envelope] = []
while sum(len(e.raw) for e in FILL) < STORE_BYTES + 4096:  # enough to leave no room
    FILL.append(priced(NOW - 3600, ttl=7 * DAY))


class EarliestExpiryFirst:
    """The previous rule, for comparison: evict what expires first, refuse a newcomer
    that would itself be first to go."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.held = max_bytes, dict[bytes, Envelope]()

    def add(self, env: Envelope, now: int) -> bool:
        used = sum(len(e.raw) for e in self.held.values())
        order = sorted(self.held.values(), key=lambda e: (e.expiry, e.id))
        while used + len(env.raw) > self.max_bytes:
            first = order.pop(0)
            if first.expiry >= env.expiry:
                return False
            del self.held[first.id]
            used -= len(first.raw)
        self.held[env.id] = env
        return True


def _filled(store: MemoryStore | EarliestExpiryFirst) -> int:
    cost = 0
    for e in FILL:
        if store.add(e, NOW - 3600):
            cost += work(e)
    return cost


def _spam(now: int, budget: int, ttl: int, bucket: int, extra: int, tag: bytes | None) -> tuple[
        list[Envelope], int]:
    """As many envelopes of one shape as ``budget`` pays for, made at ``now``, and the
    price of the next one (which it could not pay)."""
    out: list[Envelope] = []
    while True:
        e = priced(now, ttl=ttl, bucket=bucket, extra=extra, tag=tag)
        if work(e) > budget:
            return out, work(e)
        budget -= work(e)
        out.append(e)


SHAPES = list(itertools.product([2 * DAY, 7 * DAY], [256, 16384], [0, 1, 2],
                                ["before", "between", "after"], ["fresh", "one"]))


@pytest.mark.parametrize(("ttl", "bucket", "extra", "when", "tags"), SHAPES)
def test_ten_times_the_work_does_not_push_honest_mail_out(
        ttl: int, bucket: int, extra: int, when: str, tags: str) -> None:
    store = MemoryStore(max_bytes=STORE_BYTES)
    fill_cost = _filled(store)
    assert store.total_bytes + len(HONEST[0].raw) > STORE_BYTES  # full: every add evicts
    budget = ATTACKER_FACTOR * HONEST_WORK
    one_tag = os.urandom(16) if tags == "one" else None
    spent = sent_spam = price = 0

    def attack(now: int, share: int) -> None:
        nonlocal spent, sent_spam, price
        envs, price = _spam(now, share, ttl, bucket, extra, one_tag)
        for e in envs:
            spent += work(e)
            sent_spam += store.add(e, now)

    if when == "before":
        attack(NOW - 1, budget)
    for i, honest in enumerate(HONEST):
        now = NOW + 600 * i
        if when == "between":
            attack(now, budget * (i + 1) // HONEST_N - spent)  # what it has earned so far
        assert store.add(honest, now), "an honest message was refused"
        assert all(h.id in store for h in HONEST[: i + 1]), "an honest message was pushed out"
    end = NOW + 600 * HONEST_N
    if when == "after":
        attack(end, budget)
    held = sum(h.id in store for h in HONEST)
    print(f"ttl {ttl // DAY} d, {bucket} B, +{extra} bits, {when}, {tags} tags: attacker "
          f"{spent / HONEST_WORK:.1f}× the honest work (+ {fill_cost / HONEST_WORK:.0f}× to fill "
          f"the store first), {sent_spam} of its envelopes taken; honest held {held}/{HONEST_N}")
    assert spent <= ATTACKER_FACTOR * HONEST_WORK
    assert spent + price > ATTACKER_FACTOR * HONEST_WORK  # it spent all it could
    if spent and extra:
        assert sent_spam > 0  # paying more per byte-second than the filling gets in
    assert held == HONEST_N
    assert store.total_bytes <= STORE_BYTES


def test_the_same_full_store_under_earliest_expiry_first_refuses_every_honest_message() -> None:
    """The scenario has teeth: the previous rule, given the same full store, lets none in."""
    old = EarliestExpiryFirst(STORE_BYTES)
    _filled(old)
    taken = [old.add(h, NOW + 600 * i) for i, h in enumerate(HONEST)]
    assert not any(taken)


def test_the_honest_sender_paid_only_the_minimum() -> None:
    for i, h in enumerate(HONEST):
        need = pow_bits_required(h, NOW + 600 * i, LOW_BITS)
        assert pow.work_bits(h.pow_digest, h.nonce) == need
