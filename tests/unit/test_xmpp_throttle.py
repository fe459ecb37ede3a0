"""Login throttling: delays grow, accounts lock, others are not punished."""

from __future__ import annotations

from bridge.xmpp.throttle import LoginThrottle, ThrottlePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**kw: float) -> tuple[LoginThrottle, Clock]:
    clock = Clock()
    policy = ThrottlePolicy(free_failures=2, base_delay=1.0, max_delay=8.0, lockout_after=10,
                            lockout_seconds=60.0, window=400.0, **kw)  # type: ignore[arg-type]
    return LoginThrottle(policy, clock), clock


def test_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    throttle, _ = make()
    delays = [throttle.failure("127.0.0.1", "alice") for _ in range(8)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2:6] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == 8.0


def test_account_locks_and_unlocks_with_time() -> None:
    throttle, clock = make()
    for _ in range(10):
        throttle.failure("127.0.0.1", "alice")
    assert throttle.locked_for("alice") == 60.0
    assert throttle.locked_for("ALICE") == 60.0  # localparts are case-insensitive
    assert throttle.locked_for("bob") == 0.0  # other accounts are not affected
    clock.now += 61
    assert throttle.locked_for("alice") == 0.0


def test_counters_decay_and_success_clears_the_account() -> None:
    throttle, clock = make()
    for _ in range(4):
        throttle.failure("10.0.0.1", "alice")
    clock.now += 4000  # ten half-lives
    assert throttle.failure("10.0.0.2", "alice") == 0.0
    throttle.success("10.0.0.2", "alice")
    assert throttle.locked_for("alice") == 0.0


def test_memory_is_bounded() -> None:
    throttle = LoginThrottle(ThrottlePolicy(max_entries=100))
    for i in range(10_000):
        throttle.failure(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert len(throttle._sources) <= 100 and len(throttle._accounts) <= 100
