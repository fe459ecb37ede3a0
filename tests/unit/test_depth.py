"""The depth a node carries at, chosen from its intake (bridge/core/depth.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.depth import (
    DAY,
    DepthRule,
    Intake,
    carried,
    fits,
    next_depth,
)
from bridge.core.shards import KEY_BITS, Prefix, prefix

MB = 1 << 20
RULE = DepthRule(budget=100 * MB, floor=16, settle=3600)
KEY = 0b1011_0000_0000_0001


def many(_: Prefix) -> int:
    return 50


def none(_: Prefix) -> int:
    return 0


def test_over_budget_deepens_toward_the_own_key() -> None:
    assert next_depth(0, (KEY,), 150 * MB, 7200, RULE, many) == 1
    assert carried((KEY,), 1) == (prefix(1, 1),)
    assert carried((KEY,), 3) == (prefix(0b101, 3),)


def test_within_budget_stays() -> None:
    for per_day in (26 * MB, 60 * MB, 100 * MB):
        assert next_depth(3, (KEY,), per_day, 7200, RULE, many) == 3


def test_a_quarter_of_the_budget_goes_back_up_and_depth_zero_is_the_top() -> None:
    assert next_depth(3, (KEY,), 25 * MB, 7200, RULE, many) == 2
    assert next_depth(0, (KEY,), 0, 7200, RULE, many) == 0


def test_no_change_before_the_measurement_settles() -> None:
    assert next_depth(0, (KEY,), 10_000 * MB, 3599, RULE, many) == 0
    assert next_depth(3, (KEY,), 0, 3599, RULE, many) == 3


def test_a_thin_child_is_not_narrowed_to() -> None:
    assert next_depth(2, (KEY,), 500 * MB, 7200, RULE, none) == 2
    seen: list[Prefix] = []

    def count(p: Prefix) -> int:
        seen.append(p)
        return 16 if p == prefix(0b101, 3) else 0

    assert next_depth(2, (KEY,), 500 * MB, 7200, RULE, count) == 3
    assert seen == [prefix(0b101, 3)]  # the child that holds the own key, no other


def test_every_own_key_needs_enough_carriers() -> None:
    keys = (0x0000, 0xFFFF)

    def only_low(p: Prefix) -> int:
        return 99 if p.start == 0 else 3

    assert next_depth(0, keys, 500 * MB, 7200, RULE, only_low) == 0
    assert next_depth(0, keys, 500 * MB, 7200, RULE, many) == 1
    assert carried(keys, 1) == (prefix(0, 1), prefix(1, 1))


def test_never_past_sixteen_prefixes_nor_sixteen_bits() -> None:
    keys = tuple(range(0, 1 << 16, 1 << 11))  # 32 keys, apart in the first 5 bits
    assert fits(keys, 4) and not fits(keys, 5)
    assert next_depth(4, keys, 500 * MB, 7200, RULE, many) == 4
    assert next_depth(KEY_BITS, (KEY,), 500 * MB, 7200, RULE, many) == KEY_BITS
    capped = DepthRule(budget=MB, max_depth=2)
    assert next_depth(2, (KEY,), 500 * MB, 7200, capped, many) == 2


def test_bad_rules_and_no_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        DepthRule(budget=0)
    with pytest.raises(ValueError):
        DepthRule(budget=1, max_depth=17)
    with pytest.raises(ValueError):
        next_depth(0, (), 1.0, 7200, RULE, many)


def test_intake_is_a_rate_over_the_window() -> None:
    meter = Intake(window=6 * 3600, bucket=300)
    assert meter.per_day(0) == 0
    for minute in range(120):  # 1 KiB a minute for two hours
        meter.add(1000 + minute * 60.0, 1024)
    now = 1000 + 120 * 60.0
    assert meter.measured_for(now) == pytest.approx(7200)
    assert meter.per_day(now) == pytest.approx(1024 * 1440, rel=0.01)
    later = now + 7 * 3600  # nothing for seven hours: the window has let it all go
    assert meter.per_day(later) == 0
    assert meter.measured_for(later) == 6 * 3600


def test_intake_restarts_and_stays_bounded() -> None:
    meter = Intake(window=3600, bucket=60)
    for s in range(0, 10 * 3600, 7):
        meter.add(float(s), 100)
    assert len(meter._buckets) <= 3600 // 60 + 1
    meter.start(10 * 3600.0)
    assert meter.per_day(10 * 3600.0) == 0 and meter.measured_for(10 * 3600.0 + 5) == 5


@given(st.integers(0, 16), st.floats(0, 1e12), st.integers(0, 0xFFFF))
def test_one_step_at_most_and_within_bounds(depth: int, per_day: float, key: int) -> None:
    d = next_depth(depth, (key,), per_day, DAY, RULE, many)
    assert abs(d - depth) <= 1 and 0 <= d <= KEY_BITS
    if per_day > RULE.budget:
        assert d >= depth
    elif per_day > RULE.budget / 4:
        assert d == depth


def test_the_config_key_and_its_clash_with_fixed_shards() -> None:
    from bridge.config import ConfigError, parse

    assert parse("").carry_mb_day == 0
    assert parse("[p2p]\ncarry_mb_day = 2000").carry_mb_day == 2000
    for bad in ("-1", "true", '"lots"', "1.5"):
        with pytest.raises(ConfigError, match="MB a day"):
            parse(f"[p2p]\ncarry_mb_day = {bad}")
    with pytest.raises(ConfigError, match="keep one"):
        parse('[p2p]\ncarry_mb_day = 10\nshards = ["0/1"]')
    assert parse('[p2p]\ncarry_mb_day = 0\nshards = ["0/1"]').shards == (prefix(0, 1),)
