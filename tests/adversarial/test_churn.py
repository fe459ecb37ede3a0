"""Reconnect churn against a real ``paranoim run``: an attacker with twice as many
sockets as the node has inbound slots reconnects as fast as it can — each socket
says HELLO, and is opened again the moment it is closed or refused. New inbound
connections are admitted at a bounded rate per prefix and per node and the rest
are cut at accept, so the victim spends far less CPU than the attacker, an honest
peer from another network gets in, and an honest message crosses the victim."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bridge.core.envelope import Envelope
from bridge.net.node import Node
from tests.adversarial.gossip_harness import HONEST_SOURCES, honest_config
from tests.adversarial.slots_support import honest_connect, start_attacker, stop_attacker, usage
from tests.daemonproc import Paranoim
from tests.gossip_support import make_envelope

SOCKETS = 112  # twice the 56 inbound slots
WINDOW = 6.0  # s of attack measured
HONEST_WITHIN = 5.0


@pytest.mark.parametrize("sources", ["one", "spread"])  # 127.0.0.1 (Tor's), or 112 /24s
async def test_reconnect_churn_costs_the_attacker_more_than_the_victim(
        pim: Paranoim, free_port: Callable[[], int], sources: str) -> None:
    daemon = pim.start_daemon(free_port=free_port)
    port = int(pim.runtime()["ports"]["p2p"])  # type: ignore[index]
    p2p = f"127.0.0.1:{port}"
    src = Node(honest_config(p2p, HONEST_SOURCES[0]))
    dst = Node(honest_config(p2p, HONEST_SOURCES[1]))
    arrived: set[bytes] = set()

    def on_arrival(env: Envelope) -> None:
        arrived.add(env.id)
        dst.notify_change()

    dst.subscribe(on_arrival)
    attacker = None
    try:
        for n in (src, dst):
            await n.start()
            await n.wait_for(lambda n=n: bool(n.active_conns()), 20)  # type: ignore[misc]
        before = usage(daemon.proc.pid)
        attacker = start_attacker("churn", str(port), str(SOCKETS), sources)
        attacker.wait_for("ready", 30)  # its sockets are up and the node refuses the rest
        start = time.monotonic()
        latency, _ = await honest_connect(port, src="127.9.9.9", timeout=HONEST_WITHIN + 5)
        env = make_envelope(int(time.time()), base_bits=8)
        await src.publish(env.raw)
        await dst.wait_for(lambda: env.id in arrived, 20)
        left = start + WINDOW - time.monotonic()
        if left > 0:  # the rest of the window over which the attack's cost is measured
            await asyncio.sleep(left)
        after = usage(daemon.proc.pid)
    finally:
        stats = stop_attacker(attacker) if attacker is not None else {}
        await src.stop()
        await dst.stop()
    victim_cpu = after.cpu - before.cpu
    print(f"\nchurn from {sources}: attacker {stats['cpu']:.1f} s CPU, "
          f"{int(stats['connects'])} links, {int(stats['refused'])} refused; victim "
          f"{victim_cpu:.1f} s CPU, peak RSS {after.peak_rss_kib / 1024:.0f} MiB; honest peer "
          f"in {latency * 1000:.0f} ms")
    assert latency < HONEST_WITHIN
    assert stats["connects"] + stats["refused"] > 2 * SOCKETS  # it did churn
    assert victim_cpu < stats["cpu"] / 2, "the victim spent more than half the attacker's CPU"
