"""One attack against a real ``paranoim run`` daemon, measured from outside.

The victim is the real executable on loopback; the attacker is any program,
given as its argv, run in its own process. The argv may name the victim with
``{p2p}`` (host:port of its P2P port), ``{port}``, ``{address}`` (the address of
an identity made in the victim for the attack) and ``{seconds}`` (the attack's
length). The attacker says the attack is on by printing a first line (whatever
it is: ``started``, ``ready``, ``published``); when the attack's time is up its
standard input is closed, and its last line is its report: a JSON object, or
``stats key=value ...``; its CPU seconds are the report's ``cpu_s`` or ``cpu``,
else the last figure read from ``/proc`` during the attack.

Two honest nodes link to the victim only (no peer exchange, so they never meet
directly), each from a /24 of its own on loopback (127.8.x.1: an honest peer on
the open network is not in the attacker's network): one publishes a small
envelope every ``HONEST_EVERY`` seconds during the attack, the other must
receive each through the victim. A third honest node connects in the middle of
the attack, from a network (/16) the victim has not heard from: a newcomer.
``GET /status`` on the victim's P2P port is probed all along from its own
address; its latency stands for the victim's event-loop lag. The same
harness serves the tests (which assert) and the benchmark (which prints).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Sequence
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
HONEST_SOURCES = ("127.8.1.1", "127.8.2.1", "127.9.3.1")  # sender, receiver, latecomer
PROBE_SOURCE = "127.8.4.1"
ROOT = Path(__file__).resolve().parents[2]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+)", status)
    assert found
    return int(found[1]) / 1024


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


@dataclass(frozen=True)
class Attack:
    """An attacker program and what the victim runs with for it."""

    name: str
    argv: Sequence[str]  # the program, {p2p} {port} {address} {seconds} filled in
    seconds: float
    config: str = ""  # lines added to the victim's [p2p] section
    prefill: int = 0  # envelopes passed through the victim before the attack (a store)


@dataclass
class Outcome:
    attack: str
    budget_mb: int
    attacker: dict[str, Any]
    attacker_cpu_s: float = 0.0
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


def gossip_attack(kind: str, seconds: float, links: int, **kw: Any) -> Attack:
    """An attack of ``tests.adversarial.gossip_attacker``."""
    return Attack(f"{kind} ({links} links)", [
        sys.executable, "-m", "tests.adversarial.gossip_attacker", kind, "{p2p}", "{seconds}",
        str(links)], seconds, **kw)


def honest_config(victim: str, source: str) -> NodeConfig:
    return NodeConfig(base_bits=1, bootstrap=[victim], peer_exchange=False,
                      anti_entropy_interval=1.0, backoff_min=0.1, backoff_max=1.0,
                      connector=lambda: aiohttp.TCPConnector(local_addr=(source, 0)))


def parse_report(line: str) -> dict[str, Any]:
    """An attacker's last line: a JSON object or ``stats key=value ...``."""
    if line.startswith("stats "):
        return {k: float(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}
    report: dict[str, Any] = json.loads(line)
    return report


async def _linked(node: Node, timeout: float) -> float:
    t0 = time.monotonic()
    await node.wait_for(lambda: bool(node.active_conns()), timeout)
    return time.monotonic() - t0


async def run_attack(root: Path, attack: Attack, *, budget_mb: int | None = 64) -> Outcome:
    """Run ``attack`` against a fresh victim; ``budget_mb`` None leaves the default budget."""
    victim = Daemon(root / "victim", "V")
    config = '[p2p]\nlisten = "127.0.0.1"\n'
    if budget_mb is not None:
        config += f"memory_budget_mb = {budget_mb}\n"
    victim.config.write_text(config + attack.config)
    address = ""
    if any("{address}" in a for a in attack.argv):
        victim.new_identity("Vic")
        address = victim.accounts["Vic"].address
    victim.start()
    assert victim.proc is not None
    pid = victim.proc.pid
    src = Node(honest_config(victim.p2p, HONEST_SOURCES[0]))
    dst = Node(honest_config(victim.p2p, HONEST_SOURCES[1]))
    late: Node | None = None
    connecting: asyncio.Future[float] | None = None
    sent: dict[bytes, float] = {}
    arrived: dict[bytes, float] = {}

    def on_arrival(env: Envelope) -> None:
        arrived.setdefault(env.id, time.monotonic())

    dst.subscribe(on_arrival)
    attacker: asyncio.subprocess.Process | None = None
    out = Outcome(attack.name, budget_mb or 512, {})
    fill = {"{p2p}": victim.p2p, "{port}": str(victim.p2p_port), "{address}": address,
            "{seconds}": str(attack.seconds)}
    argv = [fill.get(a, a) for a in attack.argv]  # whole arguments: other braces stay
    seconds = attack.seconds
    try:
        await src.start()
        await dst.start()
        await asyncio.gather(_linked(src, 20), _linked(dst, 20))
        if attack.prefill:
            now = int(time.time())
            for _ in range(attack.prefill):
                await src.publish(make_envelope(now, base_bits=1).raw)
            await dst.wait_for(lambda: len(dst.store) >= attack.prefill, 60)
        status_url = f"http://{victim.p2p}/status"
        out.rss0_mb = out.rss_peak_mb = rss_mb(pid)
        cpu0 = cpu_s(pid)
        attacker = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert attacker.stdout is not None and attacker.stdin is not None
        line = await asyncio.wait_for(attacker.stdout.readline(), 120)
        assert line.strip(), "the attacker ended before its attack began"
        t_end = time.monotonic() + seconds
        attacker_cpu = 0.0
        next_honest = time.monotonic()
        probe = aiohttp.TCPConnector(local_addr=(PROBE_SOURCE, 0))
        async with aiohttp.ClientSession(connector=probe,
                                         timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < t_end:
                now = time.monotonic()
                if now >= next_honest:
                    env = make_envelope(int(time.time()), base_bits=1)
                    sent[env.id] = time.monotonic()
                    await src.publish(env.raw)
                    next_honest = now + HONEST_EVERY
                if late is None and now > t_end - seconds / 2:
                    late = Node(honest_config(victim.p2p, HONEST_SOURCES[2]))
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
                with contextlib.suppress(OSError):
                    attacker_cpu = cpu_s(attacker.pid)
                await asyncio.sleep(PROBE_EVERY)
            if connecting is not None:
                try:
                    out.honest_connect_s = await connecting
                except TimeoutError:
                    out.honest_connect_s = None
            attacker.stdin.close()
            report = ""
            while True:  # its last line is the report
                got = await asyncio.wait_for(attacker.stdout.readline(), 300)
                if not got:
                    break
                report = got.decode().strip() or report
                if report.startswith(("{", "stats ")):
                    break
            out.victim_cpu_s = cpu_s(pid) - cpu0
            out.attacker = parse_report(report)
            # its own figure (getrusage) if it reports one, else the last seen in /proc
            out.attacker_cpu_s = float(out.attacker.get("cpu_s", out.attacker.get(
                "cpu", attacker_cpu)))
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
        if connecting is not None and not connecting.done():
            connecting.cancel()
        if attacker is not None and attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
        for n in (src, dst, late):
            if n is not None:
                await n.stop()
        victim.stop()


HEADER = ("| attack | attacker CPU s | victim CPU s | victim/attacker | victim RSS, start → "
          "peak (budget) | event-loop lag p99 | honest delivery | honest peer connects |\n"
          "|---|---|---|---|---|---|---|---|")


def row(o: Outcome) -> str:
    connect = f"{o.honest_connect_s:.2f} s" if o.honest_connect_s is not None else "never"
    ratio = f"{o.victim_cpu_s / o.attacker_cpu_s:.2f}" if o.attacker_cpu_s >= 0.05 else "–"
    return (f"| {o.attack} | {o.attacker_cpu_s:.1f} | {o.victim_cpu_s:.1f} | {ratio} | "
            f"{o.rss0_mb:.0f} → {o.rss_peak_mb:.0f} MiB ({o.budget_mb} MiB) | "
            f"{o.lag_p99_ms:.0f} ms | {o.delivery:.0%} of {o.honest_sent} | {connect} |")
