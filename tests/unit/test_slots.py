"""Inbound slots: which caps a peer counts in, and whom a newcomer displaces."""

from __future__ import annotations

import math

from bridge.core.slots import (
    PROTECT_FAST,
    PROTECT_GROUPS,
    PROTECT_NOVEL,
    Inbound,
    choose_eviction,
    eviction_group,
    inbound_keys,
)

SECRET = bytes(32)


def test_caps_by_host_and_prefix() -> None:
    assert inbound_keys("203.0.113.5") == ("4:203.0.113.5", "4:203.0.113.0/24")
    assert inbound_keys("::ffff:203.0.113.5") == ("4:203.0.113.5", "4:203.0.113.0/24")
    assert inbound_keys("2001:db8:1:2:3::4") == ("6:2001:db8:1:2::/64", "6:2001:db8:1::/48")
    assert inbound_keys("127.3.4.5") == ("4:127.3.4.5", "4:127.3.4.0/24")  # a simulated network
    assert inbound_keys("127.0.0.1") is None and inbound_keys("::1") is None  # Tor, local programs
    assert eviction_group("127.0.0.1") == "=127.0.0.1"
    assert eviction_group("203.0.113.5") == "4:203.0.113.0/24"


def idle(key: int, group: str, since: float, **kw: float) -> Inbound:
    return Inbound(key, group, since, True, **kw)


def test_a_link_without_hello_goes_first_the_oldest() -> None:
    links = [idle(1, "a", 0.0), Inbound(2, "b", 5.0, False), Inbound(3, "b", 3.0, False)]
    assert choose_eviction(links, SECRET) == 3


def test_the_newest_of_the_biggest_group_goes() -> None:
    # enough links that some are left after every protection
    links = [idle(i, f"g{i}", float(i), latency=0.01) for i in range(PROTECT_GROUPS + PROTECT_FAST)]
    flood = [idle(100 + i, "attacker", 50.0 + i, latency=1.0) for i in range(20)]
    victim = choose_eviction(links + flood, SECRET)
    assert victim == 119  # the newest attacker link; no honest one


def test_useful_links_are_protected() -> None:
    n = 40
    links = [idle(i, "same", float(i), latency=1.0) for i in range(n)]
    novel = idle(1000, "same", 100.0, latency=1.0, last_novel=99.0)  # the newest, but useful
    fast = idle(1001, "same", 101.0, latency=0.001)
    victim = choose_eviction([*links, novel, fast], SECRET)
    assert victim not in (1000, 1001)
    assert victim == n - 1  # the newest of the rest


def test_protection_by_group_keeps_one_link_of_a_few_networks() -> None:
    links = [idle(i, f"net{i}", float(i), latency=math.inf) for i in range(PROTECT_GROUPS)]
    assert choose_eviction(links, SECRET) is None  # every link is protected: refuse


def test_only_protected_links_refuses_the_newcomer() -> None:
    links = [idle(i, "g", float(i), latency=0.01 * i) for i in range(PROTECT_FAST)]
    assert choose_eviction(links, SECRET) is None
    assert PROTECT_NOVEL > 0
