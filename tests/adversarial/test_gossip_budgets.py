"""Gossip attacks on a real daemon over its real P2P port, each from its own attacker
process (``tests.adversarial.gossip_attacker``): the victim's memory stays within its
budget, it keeps answering ``/status``, an honest peer gets in during the attack and
every honest envelope sent during it is delivered through the victim.

The figures each run measures are printed (``-s``); ``tests/bench/bench_attack.py``
runs the same attacks for longer and prints them as one table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.gossip_harness import HEADER, Outcome, gossip_attack, row, run_attack

BUDGET_MB = 64
LIGHT_PEERS = 16  # NodeConfig.max_light_peers


def _holds(o: Outcome) -> None:
    print(f"\n{HEADER}\n{row(o)}")
    assert o.rss_peak_mb < o.rss0_mb + BUDGET_MB, "victim memory passed its budget"
    assert o.probes_failed == 0 and o.probes_ms, "/status went unanswered"
    assert o.lag_p99_ms < 1000, f"/status p99 {o.lag_p99_ms:.0f} ms"
    assert o.honest_connect_s is not None and o.honest_connect_s < 5, "honest peer kept out"
    assert o.honest_sent >= 10 and o.delivery >= 0.99, f"honest delivery {o.delivery:.0%}"


async def test_wants_from_peers_that_never_read_cost_their_queue_not_our_memory(
        tmp_path: Path) -> None:
    # 128 bodies of 64 KiB asked for again and again on 4 links that never read: each
    # link holds at most half its queue cap; the rest wait in a bounded want set.
    o = await run_attack(tmp_path, gossip_attack("want", 8, 4), budget_mb=BUDGET_MB)
    _holds(o)
    assert o.attacker["links"] == 4


async def test_announcing_ids_never_delivered_is_throttled_then_dropped(tmp_path: Path) -> None:
    o = await run_attack(tmp_path, gossip_attack("have", 6, 8), budget_mb=BUDGET_MB)
    _holds(o)
    assert o.attacker["byes"].get("FLOOD", 0) >= 8, o.attacker


async def test_watch_shard_frames_are_throttled_then_dropped(tmp_path: Path) -> None:
    o = await run_attack(tmp_path, gossip_attack("watch", 5, 4, prefill=2000), budget_mb=BUDGET_MB)
    _holds(o)
    assert o.attacker["byes"].get("FLOOD", 0) >= 4, o.attacker
    # Each WATCH_SHARD the victim takes starts a reconciliation of its 2,000 envelopes
    # (one fingerprint); one asked again while its session waits costs nothing more, and
    # past the allowance the frame is not even parsed: the victim spends about what the
    # attacker does on its links.
    assert o.victim_cpu_s < 2 * o.attacker_cpu_s + 1, f"victim CPU {o.victim_cpu_s:.1f} s"


async def test_peer_exchange_floods_are_throttled_then_dropped(tmp_path: Path) -> None:
    o = await run_attack(tmp_path, gossip_attack("peers", 5, 4), budget_mb=BUDGET_MB)
    _holds(o)
    assert o.attacker["byes"].get("FLOOD", 0) >= 4, o.attacker


@pytest.mark.parametrize("links", [40])
async def test_light_peers_are_bounded(tmp_path: Path, links: int) -> None:
    o = await run_attack(tmp_path, gossip_attack("light", 4, links), budget_mb=BUDGET_MB)
    _holds(o)
    assert o.attacker["open_at_end"] <= LIGHT_PEERS, o.attacker
    assert o.attacker["byes"].get("NORMAL", 0) >= links - LIGHT_PEERS, o.attacker
