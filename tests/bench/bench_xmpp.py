"""XMPP end-to-end benchmark, one run: ``.venv/bin/python -m tests.bench.bench_xmpp``.

The same load over two paths, printed as one table with the ratios:

1. ParanoIM: slixmpp client → embedded listener of daemon A → sealed, PoW-stamped
   envelope → P2P link over loopback → daemon B → its listener → slixmpp client.
   Two real ``paranoim run`` processes at ``--difficulty 1`` (the minimum).
2. Baseline: the same two slixmpp clients as two users of a local Prosody c2s.

Load: ``--messages`` chat messages from Alice to Bob with at most ``--concurrency``
in flight (a new one leaves when one arrives); a few warm-up messages first. Latency
is send → arrival, both measured in this process; stanzas/s is messages over the
time from the first send to the last arrival. The CPU time each side spent per
message during the load is shown too (from /proc: the server processes with their
children, and this process, which runs both clients): it says whether a path is
bound by work or by waiting. With ``--rounds N`` the two paths are measured N times,
alternately, and the table shows each path's median round by stanzas/s: on a shared
machine one round can catch another program's burst.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slixmpp import JID

from tests.interop.drivers import Prosody, SlixClient
from tests.interop.test_clients import Daemon

WARMUP = 5


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children (worker processes), from /proc."""
    total = 0.0
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass(frozen=True, slots=True)
class Result:
    path: str
    messages: int
    concurrency: int
    seconds: float
    latencies: list[float]
    server_cpu: float = 0.0  # seconds of CPU of the server processes during the load
    client_cpu: float = 0.0  # seconds of CPU of this process (both clients) during it

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run_load(path: str, sender: SlixClient, receiver: SlixClient, to: str,
                   messages: int, concurrency: int, servers: tuple[int, ...] = ()) -> Result:
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    slots = asyncio.Semaphore(concurrency)
    done = asyncio.Event()
    expected: set[str] = set()

    def on_message(msg: Any) -> None:
        body = str(msg["body"])
        if body in sent and body not in arrived:
            arrived[body] = time.perf_counter()
            slots.release()
            if expected and expected <= arrived.keys():
                done.set()

    receiver.add_event_handler("message", on_message)
    try:
        async def send(tags: list[str]) -> None:
            for tag in tags:
                await slots.acquire()
                sent[tag] = time.perf_counter()
                sender.send_message(mto=JID(to), mbody=tag, mtype="chat")

        warm = [f"warm-{path}-{n}" for n in range(WARMUP)]
        expected.update(warm)
        await send(warm)
        await asyncio.wait_for(done.wait(), 60)
        done.clear()
        tags = [f"load-{path}-{n}" for n in range(messages)]
        expected.clear()
        expected.update(tags)
        server0 = sum(cpu_seconds(p) for p in servers)
        client0 = time.process_time()
        start = time.perf_counter()
        await send(tags)
        await asyncio.wait_for(done.wait(), 300)
        seconds = max(arrived[t] for t in tags) - start
        client_cpu = time.process_time() - client0
        server_cpu = sum(cpu_seconds(p) for p in servers) - server0
    finally:
        receiver.del_event_handler("message", on_message)
    return Result(path, messages, concurrency, seconds, [arrived[t] - sent[t] for t in tags],
                  server_cpu, client_cpu)


async def paranoim_path(root: Path, messages: int, concurrency: int) -> Result:
    a, b = Daemon(root / "a"), Daemon(root / "b")
    alice_acc, bob_acc = a.new_identity("Alice"), b.new_identity("Bob")
    a.run()
    b.run("--peer", f"127.0.0.1:{a.port('p2p')}")
    alice = SlixClient(f"{alice_acc.jid}/bench", alice_acc.password, port=a.port("xmpp"),
                       ca_cert=a.cert)
    bob = SlixClient(f"{bob_acc.jid}/bench", bob_acc.password, port=b.port("xmpp"),
                     ca_cert=b.cert)
    try:
        await alice.start()
        await bob.start()
        # each adds the other (a subscription), so nothing waits as a contact request
        alice.send_presence(pto=JID(bob_acc.contact_jid), ptype="subscribe")
        bob.send_presence(pto=JID(alice_acc.contact_jid), ptype="subscribe")
        bob.send_chat("paranoim@localhost", "status")
        await bob.wait_for_message("peers connected: 1", sender="paranoim@localhost",
                                   timeout=30)
        assert a.proc is not None and b.proc is not None
        return await run_load("paranoim", alice, bob, bob_acc.contact_jid, messages,
                              concurrency, (a.proc.pid, b.proc.pid))
    finally:
        await alice.stop()
        await bob.stop()
        b.stop()
        a.stop()


async def prosody_path(messages: int, concurrency: int) -> Result:
    server = Prosody().start()
    try:
        alice_jid = server.register("alice", "alice-pw")
        bob_jid = server.register("bob", "bob-pw")
        alice = SlixClient(f"{alice_jid}/bench", "alice-pw", port=server.c2s_port,
                           ca_cert=server.cert.cert)
        bob = SlixClient(f"{bob_jid}/bench", "bob-pw", port=server.c2s_port,
                         ca_cert=server.cert.cert)
        await alice.start()
        await bob.start()
        try:
            assert server.proc is not None
            return await run_load("prosody", alice, bob, bob_jid, messages, concurrency,
                                  (server.proc.pid,))
        finally:
            await alice.stop()
            await bob.stop()
    finally:
        server.cleanup()


def median_round(results: list[Result]) -> Result:
    """The round with the median stanzas/s (the lower one of an even count)."""
    return sorted(results, key=lambda r: r.rate)[(len(results) - 1) // 2]


def table(ours: Result, base: Result) -> str:
    rows = [
        "| path | messages | in flight | stanzas/s | p50 ms | p99 ms | server CPU µs/msg "
        "| clients CPU µs/msg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, name in ((ours, "ParanoIM: client → gateway → P2P (2 daemons) → gateway → client"),
                    (base, "Prosody c2s: client → server → client")):
        rows.append(f"| {name} | {r.messages} | {r.concurrency} | {r.rate:,.1f} | "
                    f"{r.pct(0.50):.1f} | {r.pct(0.99):.1f} | "
                    f"{r.server_cpu / r.messages * 1e6:.0f} | "
                    f"{r.client_cpu / r.messages * 1e6:.0f} |")
    cpu_ratio = (ours.server_cpu / base.server_cpu) if base.server_cpu else float("nan")
    rows.append(f"| ratio ParanoIM / Prosody | | | {ours.rate / base.rate:.3f} | "
                f"{ours.pct(0.50) / base.pct(0.50):.1f} | {ours.pct(0.99) / base.pct(0.99):.1f} "
                f"| {cpu_ratio:.1f} | |")
    return "\n".join(rows)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both paths N times, alternately; show the median")
    args = parser.parse_args(argv)
    mine: list[Result] = []
    theirs: list[Result] = []
    for n in range(args.rounds):
        root = Path(tempfile.mkdtemp(prefix="paranoim-bench-xmpp-"))
        try:
            mine.append(await paranoim_path(root, args.messages, args.concurrency))
            theirs.append(await prosody_path(args.messages, args.concurrency))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if args.rounds > 1:
            print(f"round {n + 1}: ParanoIM {mine[-1].rate:,.0f}/s p50 "
                  f"{mine[-1].pct(0.5):.1f} ms, Prosody {theirs[-1].rate:,.0f}/s p50 "
                  f"{theirs[-1].pct(0.5):.1f} ms")
    ours, base = median_round(mine), median_round(theirs)
    print(f"\n## XMPP end to end on loopback ({args.messages} chat messages, "
          f"{args.concurrency} in flight, PoW difficulty 1; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}"
          f"{f'; median of {args.rounds} rounds' if args.rounds > 1 else ''})\n")
    print(table(ours, base))
    print(f"\nmean latency: ParanoIM {statistics.mean(ours.latencies) * 1000:.1f} ms, "
          f"Prosody {statistics.mean(base.latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
