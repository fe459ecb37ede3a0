"""One gossip attack against a real ``paranoim run`` daemon, measured from outside.

The victim is the real executable on loopback with ``[p2p] memory_budget_mb``
set; the attacker is ``tests.adversarial.gossip_attacker`` in its own process.
Two honest nodes link to the victim only (no peer exchange, so they never meet
directly): one publishes a small envelope every ``HONEST_EVERY`` seconds during
the attack, the other must receive each through the victim. A third honest
node connects in the middle of the attack. ``GET /status`` on the victim's P2P
port is probed all along; its latency stands for the victim's event-loop lag.
The same harness serves the tests (which assert) and the benchmark (which prints).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bridge.core.envelope import Envelope
from bridge.net.node import Node, NodeConfig
from tests.gossip_support import make_envelope
from tests.integration.e2e_support import Daemon

HONEST_EVERY = 0.25  # s between honest envelopes during an attack
DELIVERED_WITHIN = 5.0  # an honest envelope counts as delivered if it arrives this soon
PROBE_EVERY = 0.1  # s between /status probes and RSS samples


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", status)
    assert found
    return int(found[1]) / 1024


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


@dataclass
class Outcome:
    attack: str
    budget_mb: int
    attacker: dict[str, Any]
    victim_cpu_s: float = 0.0
    rss0_mb: float = 0.0
    rss_peak_mb: float = 0.0
    probes_ms: list[float] = field(default_factory=list)
    probes_failed: int = 0
    honest_sent: int = 0
    honest_on_time: int = 0
    honest_connect_s: float | None = None
    status_after: dict[str, Any] = field(default_factory=dict)

    @property
    def lag_p99_ms(self) -> float:
        ms = sorted(self.probes_ms)
        return ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("inf")

    @property
    def delivery(self) -> float:
        return self.honest_on_time / self.honest_sent if self.honest_sent else 0.0


def honest_config(victim: str) -> NodeConfig:
    return NodeConfig(base_bits=1, bootstrap=[victim], peer_exchange=False,
                      anti_entropy_interval=1.0, backoff_min=0.1, backoff_max=1.0)


async def _linked(node: Node, timeout: float) -> float:
    t0 = time.monotonic()
    await node.wait_for(lambda: bool(node.active_conns()), timeout)
    return time.monotonic() - t0


async def run_attack(root: Path, kind: str, *, seconds: float, links: int,
                     budget_mb: int = 64, prefill: int = 0) -> Outcome:
    """``prefill`` envelopes go through the victim before the attack (a store to scan)."""
    victim = Daemon(root / "victim", "V")
    victim.config.write_text(f'[p2p]\nlisten = "127.0.0.1"\nmemory_budget_mb = {budget_mb}\n')
    victim.start()
    assert victim.proc is not None
    pid = victim.proc.pid
    src, dst = Node(honest_config(victim.p2p)), Node(honest_config(victim.p2p))
    late: Node | None = None
    sent: dict[bytes, float] = {}
    arrived: dict[bytes, float] = {}

    def on_arrival(env: Envelope) -> None:
        arrived.setdefault(env.id, time.monotonic())

    dst.subscribe(on_arrival)
    attacker: asyncio.subprocess.Process | None = None
    out = Outcome(kind, budget_mb, {})
    try:
        await src.start()
        await dst.start()
        await asyncio.gather(_linked(src, 20), _linked(dst, 20))
        if prefill:
            now = int(time.time())
            for _ in range(prefill):
                await src.publish(make_envelope(now, base_bits=1).raw)
            await dst.wait_for(lambda: len(dst.store) >= prefill, 60)
        status_url = f"http://{victim.p2p}/status"
        out.rss0_mb = out.rss_peak_mb = rss_mb(pid)
        cpu0 = cpu_s(pid)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.adversarial.gossip_attacker", kind, victim.p2p,
            str(seconds), str(links), stdout=asyncio.subprocess.PIPE)
        assert attacker.stdout is not None
        line = await asyncio.wait_for(attacker.stdout.readline(), 60)
        assert line.strip() == b"started", line
        t_end = time.monotonic() + seconds
        next_honest = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < t_end:
                now = time.monotonic()
                if now >= next_honest:
                    env = make_envelope(int(time.time()), base_bits=1)
                    sent[env.id] = time.monotonic()
                    await src.publish(env.raw)
                    next_honest = now + HONEST_EVERY
                if late is None and now > t_end - seconds / 2:
                    late = Node(honest_config(victim.p2p))
                    await late.start()
                    connecting = asyncio.ensure_future(_linked(late, 5))
                t0 = time.monotonic()
                try:
                    async with http.get(status_url) as resp:
                        assert resp.status == 200
                        await resp.read()
                    out.probes_ms.append((time.monotonic() - t0) * 1000)
                except (aiohttp.ClientError, TimeoutError):
                    out.probes_failed += 1
                out.rss_peak_mb = max(out.rss_peak_mb, rss_mb(pid))
                await asyncio.sleep(PROBE_EVERY)
            if late is not None:
                try:
                    out.honest_connect_s = await connecting
                except TimeoutError:
                    out.honest_connect_s = None
            out.victim_cpu_s = cpu_s(pid) - cpu0
            result = await asyncio.wait_for(attacker.stdout.readline(), 60)
            out.attacker = json.loads(result)
            await asyncio.wait_for(attacker.wait(), 30)
            deadline = time.monotonic() + DELIVERED_WITHIN
            while time.monotonic() < deadline and not set(sent) <= set(arrived):
                await asyncio.sleep(0.05)
            out.honest_sent = len(sent)
            out.honest_on_time = sum(
                1 for i, t in sent.items() if i in arrived and arrived[i] - t <= DELIVERED_WITHIN)
            async with http.get(status_url) as resp:
                out.status_after = await resp.json()
        return out
    finally:
        if attacker is not None and attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
        for n in (src, dst, late):
            if n is not None:
                await n.stop()
        victim.stop()


def row(o: Outcome) -> str:
    a = o.attacker
    connect = f"{o.honest_connect_s:.2f} s" if o.honest_connect_s is not None else "never"
    return (f"| {o.attack} ({a.get('links')} links) | {a.get('cpu_s', 0):.1f} s, "
            f"{a.get('bytes', 0) / 1e6:.1f} MB sent | {o.victim_cpu_s:.1f} s | "
            f"{o.rss0_mb:.0f} → {o.rss_peak_mb:.0f} MB (budget {o.budget_mb}) | "
            f"{o.lag_p99_ms:.0f} ms | {o.delivery:.0%} of {o.honest_sent} | {connect} |")


HEADER = ("| attack | attacker cost (CPU, bytes) | victim CPU | victim RSS | /status p99 "
          "| honest delivery | honest peer connects |\n|---|---|---|---|---|---|---|")
