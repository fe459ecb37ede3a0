"""Inbound slots: which caps a peer counts in, and whom a newcomer displaces."""

from __future__ import annotations

import math

from bridge.core.slots import (
    LOOPBACK_GROUP,
    PROTECT_FAST,
    PROTECT_GROUPS,
    PROTECT_NOVEL,
    Admission,
    AdmissionLimits,
    Inbound,
    admission_keys,
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


# --- admission of new inbound connections ------------------------------------------


def test_admission_keys_group_by_prefix_and_network() -> None:
    assert admission_keys("203.0.113.5") == ("203.0.113.0/24", "203.0.0.0/16")
    assert admission_keys("2001:db8:1:2::4") == ("2001:db8:1::/48", "2001:db8::/32")
    assert admission_keys("127.0.0.1") == admission_keys("::1") == (LOOPBACK_GROUP,) * 2
    assert admission_keys("") == (LOOPBACK_GROUP,) * 2  # no IP: a local socket
    assert admission_keys("127.3.4.5") == ("127.3.4.0/24", "127.3.0.0/16")


def test_a_prefix_gets_its_burst_then_its_rate() -> None:
    lim = AdmissionLimits()
    a = Admission(lim, 0.0)
    got = sum(a.admit(f"203.0.113.{i}", 0.0) for i in range(50))
    assert got == lim.prefix_burst  # the whole /24 counts as one
    assert not a.admit("203.0.113.99", 0.0)
    assert a.admit("203.0.113.99", 1.0 / lim.prefix_rate)  # refilled
    assert a.admit("198.51.100.1", 0.0)  # another prefix is not held back


def test_loopback_is_one_group_with_a_larger_bucket() -> None:
    lim = AdmissionLimits()
    a = Admission(lim, 0.0)
    got = sum(a.admit("127.0.0.1" if i % 2 else "::1", 0.0) for i in range(200))
    assert got == lim.loopback_burst
    later = 10.0
    assert sum(a.admit("127.0.0.1", later) for _ in range(200)) == int(lim.loopback_rate * later)


def test_past_an_empty_node_bucket_only_quiet_networks_get_in() -> None:
    lim = AdmissionLimits()
    a = Admission(lim, 0.0)
    # many prefixes of one /16 drain the node's bucket
    assert sum(a.admit(f"10.1.{i}.1", 0.0) for i in range(200)) == lim.node_burst
    assert not a.admit("10.1.250.1", 0.0)  # its network is not quiet
    assert a.admit("192.0.2.1", 0.0)  # a network not heard from: the quiet lane
    assert not a.admit("192.0.2.2", 0.0)  # ...once; now it is not quiet
    lane = sum(a.admit(f"100.{i}.0.1", 0.0) for i in range(100))
    assert lane == lim.quiet_burst - 1  # the lane is bounded too
    assert a.refused and a.admitted == lim.node_burst + lim.quiet_burst


def test_admission_remembers_a_bounded_number_of_networks() -> None:
    lim = AdmissionLimits(max_tracked=64, node_burst=1e9, node_rate=1e9)
    a = Admission(lim, 0.0)
    for i in range(5000):
        a.admit(f"{10 + i // 65536 % 200}.{i // 256 % 256}.{i % 256}.1", i * 0.001)
    assert len(a.prefixes) <= 64 and len(a.last_admitted) <= 64
