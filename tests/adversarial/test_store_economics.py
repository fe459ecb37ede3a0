"""Store economics against a real daemon: a spammer with ten times an honest sender's
work, filling a small store with week-long envelopes over the real P2P port, does
not push the honest sender's two-day messages out.

The victim is ``paranoim run`` with a 1 MiB store (``[p2p] store_mb = 1``) and a low
base difficulty (the same rule at every base: costs scale by 2^base for both
sides). An honest node linked only to the victim publishes 2,100 two-day messages
of the smallest size in 64 conversations (64 pair tags: in a store this small one
tag's share, 1/16, is 64 KiB), each at exactly the minimum; meanwhile the attacker
(``tests.adversarial.store_attacker``, its own process) spends ten times their
total work on week-long envelopes of the largest size at their minimum — the
cheapest bytes-for-a-week there are — and hands them over as they are solved.
On its own its spam is more than the store holds, so under "earliest expiry
first" no honest message would have stayed. A second honest node receives
through the victim (delivery); after the attack a fresh node syncs from the
victim alone, so what it ends up with is what the victim held.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from bridge.core import pow
from bridge.core.envelope import Envelope
from bridge.net.node import Node, NodeConfig
from tests.adversarial.gossip_harness import cpu_s, rss_mb
from tests.integration.e2e_support import Daemon
from tests.store_support import priced, work

BASE_BITS = 6
HONEST_N = 2100
STORE_BYTES = 1 << 20  # store_mb = 1
FACTOR = 10
DAY = 86_400
SPAM_SIZE = 65_618  # the largest envelope


def _config(victim: str) -> NodeConfig:
    # No anti-entropy of their own in the test's time: the honest nodes hand each
    # envelope over once, so the victim cannot take back one it had dropped.
    return NodeConfig(base_bits=BASE_BITS, bootstrap=[victim], peer_exchange=False,
                      anti_entropy_interval=3600.0, backoff_min=0.1, backoff_max=1.0)


async def test_ten_times_the_work_in_week_long_spam_leaves_two_day_mail_held(
        tmp_path: Path) -> None:
    victim = Daemon(tmp_path / "victim", "V")
    victim.config.write_text(f'[p2p]\nlisten = "127.0.0.1"\ndifficulty = {BASE_BITS}\n'
                             f'store_mb = {STORE_BYTES >> 20}\n')
    victim.start()
    assert victim.proc is not None
    pid = victim.proc.pid
    src, dst = Node(_config(victim.p2p)), Node(_config(victim.p2p))
    late = Node(NodeConfig(base_bits=BASE_BITS, bootstrap=[victim.p2p], peer_exchange=False,
                           anti_entropy_interval=0.5, backoff_min=0.1, backoff_max=1.0))
    arrived: set[bytes] = set()
    dst.subscribe(lambda env: arrived.add(env.id))
    attacker: asyncio.subprocess.Process | None = None
    pair_tags = [os.urandom(16) for _ in range(64)]  # 64 conversations
    honest: list[Envelope] = []
    try:
        await src.start()
        await dst.start()
        await src.wait_for(lambda: bool(src.active_conns()), 20)
        await dst.wait_for(lambda: bool(dst.active_conns()), 20)
        honest_price = 1 << pow.required_bits(338, 2 * DAY - 300, BASE_BITS)
        budget = FACTOR * HONEST_N * honest_price
        cpu0, rss0 = cpu_s(pid), rss_mb(pid)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.adversarial.store_attacker", victim.p2p, str(budget),
            str(BASE_BITS), stdout=asyncio.subprocess.PIPE)
        assert attacker.stdout is not None
        assert (await asyncio.wait_for(attacker.stdout.readline(), 60)).strip() == b"started"
        t0, honest_cpu = time.monotonic(), time.process_time()
        for k in range(HONEST_N):
            env = priced(int(time.time()), ttl=2 * DAY, tag=pair_tags[k % 64],
                         base_bits=BASE_BITS)
            honest.append(env)
            await src.publish(env.raw)
            await asyncio.sleep(0)  # let the links run between messages
        honest_cpu = time.process_time() - honest_cpu
        ids = {e.id for e in honest}
        await dst.wait_for(lambda: ids <= arrived, 120)  # every one delivered
        await src.stop()  # nothing honest can reach the victim again
        await dst.stop()
        result = json.loads(await asyncio.wait_for(attacker.stdout.readline(), 300))
        await asyncio.wait_for(attacker.wait(), 30)
        seconds = time.monotonic() - t0
        victim_cpu = cpu_s(pid) - cpu0
        assert result["confirmed"], "the victim never served the attacker's last envelope"

        await late.start()
        room = (STORE_BYTES - sum(len(e.raw) for e in honest)) // SPAM_SIZE

        def mirrored() -> bool:
            spam = len(late.store) - sum(i in late.store for i in ids)
            return spam >= room and all(i in late.store for i in ids)

        try:
            await late.wait_for(mirrored, 60)
        finally:
            held = sum(i in late.store for i in ids)
            spam_held = len(late.store) - held
            honest_work = sum(work(e) for e in honest)
            print(f"\nattacker: {result['envelopes']} week-long envelopes of {SPAM_SIZE} B "
                  f"({result['bytes'] / 1e6:.2f} MB, the store holds {STORE_BYTES / 1e6:.2f}), "
                  f"{result['work']:.3g} hashes = {result['work'] / honest_work:.1f}× the honest "
                  f"work, {result['cpu_s']:.1f} s CPU\n"
                  f"honest: {HONEST_N} two-day envelopes of 338 B, {honest_work:.3g} hashes, "
                  f"{honest_cpu:.1f} s CPU (making and publishing); attack took {seconds:.1f} s\n"
                  f"victim: {victim_cpu:.1f} s CPU, RSS {rss0:.0f} → {rss_mb(pid):.0f} MB; "
                  f"holds {held}/{HONEST_N} honest (all {len(arrived & ids)} delivered) "
                  f"and {spam_held} of the spam")
        assert result["work"] <= budget and result["work"] + (result["work"] // max(
            1, result["envelopes"])) > budget, "the attacker spent its whole budget"
        assert result["bytes"] > STORE_BYTES, "its spam alone is more than the store holds"
        assert all(work(e) == honest_price for e in honest), "honest paid only the minimum"
        assert held == HONEST_N
    finally:
        if attacker is not None and attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
        for n in (src, dst, late):
            await n.stop()
        victim.stop()
