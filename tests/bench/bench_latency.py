"""Send → arrival latency as a person feels it, one run:

    .venv/bin/python -m tests.bench.bench_latency [--paced N] [--pace S] [--burst N]
                                                  [--mode NAME ...]

Two real ``paranoim run`` daemons on loopback at **default** settings (proof-of-work
base difficulty, lifetime, storage: nothing but ports given), B started with
``--peer`` A; a real slixmpp client on each, Alice on A and Bob on B, who have
added each other. In this process, for each mode:

1. **paced**: ``--paced`` messages from Alice to Bob, one every ``--pace`` seconds
   (default 50, one every 2 s: someone typing);
2. **burst**: ``--burst`` messages sent at once (default 50): how long the last one
   takes, and the rate at which the burst drains (messages over the time from the
   first send to the last arrival).

Latency is send → arrival, both clocks in this process. The table gives p50, p95
and max of each phase, the burst's drain rate, and whether Bob saw every message
once and in the order sent.

Modes: each is one row of the table, measured with the same two daemons started
afresh. ``default`` is the daemon as it ships (sessions, with stamps of proof of work
minted in idle time, docs/stamps.md); ``baseline`` is version 1 (``--no-sessions``),
whose proof of work is solved when the message is sent, measured in the same run.

The file is named ``bench_*.py`` so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from slixmpp import JID

from tests.interop.drivers import SlixClient, poll_until
from tests.interop.drivers._common import tail
from tests.interop.test_clients import Daemon


@dataclass(frozen=True, slots=True)
class Mode:
    """One way of running both daemons: extra ``paranoim run`` arguments and config."""

    description: str
    run_args: tuple[str, ...] = ()
    config: str = ""  # appended to each daemon's paranoim.toml


MODES: dict[str, Mode] = {
    "baseline": Mode("version 1 (--no-sessions): proof of work solved when the message is sent",
                     run_args=("--no-sessions",)),
    "default": Mode("as it ships: sessions, proof of work minted ahead in idle time"),
}


class DefaultDaemon(Daemon):
    """``paranoim run`` with nothing but free ports: the default difficulty and lifetime."""

    def run(self, *extra: str) -> DefaultDaemon:
        self.log = self.root / "daemon.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self._argv("run", "--xmpp-port", "0", "--web-port", "0", "--p2p-port", "0",
                           *extra),
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        poll_until(self._ready, 60, f"paranoim run in {self.root}", interval=0.1,
                   on_timeout=lambda: tail(self.log))
        return self


@dataclass
class Phase:
    sent: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # bodies in the order Bob saw them

    def latencies(self) -> list[float]:
        return sorted(self.arrived[t] - self.sent[t] for t in self.sent if t in self.arrived)

    def pct(self, q: float) -> float:
        lat = self.latencies()
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    @property
    def drain_rate(self) -> float:
        if not self.arrived:
            return 0.0
        return len(self.arrived) / (max(self.arrived.values()) - min(self.sent.values()))

    @property
    def in_order_once(self) -> bool:
        return self.order == list(self.sent)


@dataclass
class Result:
    mode: str
    paced: Phase
    burst: Phase


class Receiver:
    """Bob's side: the arrival time of each benchmark message, and the order seen."""

    def __init__(self, client: SlixClient) -> None:
        self.phase: Phase | None = None
        self.changed = asyncio.Event()
        client.add_event_handler("message", self._on_message)

    def _on_message(self, msg: Any) -> None:
        body = str(msg["body"])
        phase = self.phase
        if phase is None or body not in phase.sent:
            return
        phase.order.append(body)
        phase.arrived.setdefault(body, time.perf_counter())
        self.changed.set()

    async def wait_all(self, phase: Phase, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(phase.arrived) < len(phase.sent):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(phase.sent) - len(phase.arrived)} of "
                                   f"{len(phase.sent)} messages did not arrive in {timeout} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                continue


async def measure(root: Path, name: str, mode: Mode, paced: int, pace: float,
                  burst: int) -> Result:
    a, b = DefaultDaemon(root / "a"), DefaultDaemon(root / "b")
    for d in (a, b):
        if mode.config:
            d.config.write_text(d.config.read_text() + mode.config)
    alice_acc, bob_acc = a.new_identity("Alice"), b.new_identity("Bob")
    a.run(*mode.run_args)
    b.run("--peer", f"127.0.0.1:{a.port('p2p')}", *mode.run_args)
    alice = SlixClient(f"{alice_acc.jid}/bench", alice_acc.password, port=a.port("xmpp"),
                       ca_cert=a.cert)
    bob = SlixClient(f"{bob_acc.jid}/bench", bob_acc.password, port=b.port("xmpp"),
                     ca_cert=b.cert)
    try:
        await alice.start()
        await bob.start()
        alice.send_presence(pto=JID(bob_acc.contact_jid), ptype="subscribe")
        bob.send_presence(pto=JID(alice_acc.contact_jid), ptype="subscribe")
        bob.send_chat("paranoim@localhost", "status")
        await bob.wait_for_message("peers connected: 1", sender="paranoim@localhost",
                                   timeout=30)
        receiver = Receiver(bob)
        to = JID(bob_acc.contact_jid)

        def send(phase: Phase, body: str) -> None:
            phase.sent[body] = time.perf_counter()
            alice.send_message(mto=to, mbody=body, mtype="chat")

        # warm-up: the first message of a conversation, both daemons' first proof
        warm = Phase()
        receiver.phase = warm
        send(warm, f"warm-up {name}")
        await receiver.wait_all(warm, 120)

        steady = Phase()
        receiver.phase = steady
        start = time.perf_counter()
        for n in range(paced):
            delay = start + n * pace - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the typing pace itself, not a wait for a result
            send(steady, f"paced {name} #{n:03}")
        await receiver.wait_all(steady, 120 + 10 * paced)

        rush = Phase()
        receiver.phase = rush
        for n in range(burst):
            send(rush, f"burst {name} #{n:03}")
        await receiver.wait_all(rush, 120 + 10 * burst)
        return Result(name, steady, rush)
    finally:
        await alice.stop()
        await bob.stop()
        b.stop()
        a.stop()


def table(results: list[Result]) -> str:
    rows = [
        "| mode | paced p50 s | paced p95 s | paced max s | burst p50 s | burst p95 s "
        "| burst max s | burst drain msg/s | once, in order |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ok = "yes" if r.paced.in_order_once and r.burst.in_order_once else "NO"
        rows.append(
            f"| {r.mode} | {r.paced.pct(0.5):.3f} | {r.paced.pct(0.95):.3f} | "
            f"{r.paced.pct(1.0):.3f} | {r.burst.pct(0.5):.3f} | {r.burst.pct(0.95):.3f} | "
            f"{r.burst.pct(1.0):.3f} | {r.burst.drain_rate:.1f} | {ok} |")
    base = results[0]
    for r in results[1:]:
        rows.append(
            f"| {r.mode} ÷ {base.mode} | {r.paced.pct(0.5) / base.paced.pct(0.5):.2f} | "
            f"{r.paced.pct(0.95) / base.paced.pct(0.95):.2f} | "
            f"{r.paced.pct(1.0) / base.paced.pct(1.0):.2f} | "
            f"{r.burst.pct(0.5) / base.burst.pct(0.5):.2f} | "
            f"{r.burst.pct(0.95) / base.burst.pct(0.95):.2f} | "
            f"{r.burst.pct(1.0) / base.burst.pct(1.0):.2f} | "
            f"{r.burst.drain_rate / base.burst.drain_rate:.2f} | |")
    return "\n".join(rows)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paced", type=int, default=50, help="messages at a human pace")
    parser.add_argument("--pace", type=float, default=2.0, help="seconds between them")
    parser.add_argument("--burst", type=int, default=50, help="messages sent at once")
    parser.add_argument("--mode", action="append", choices=sorted(MODES),
                        help="a row of the table (repeatable; default: every mode)")
    args = parser.parse_args(argv)
    modes = args.mode or list(MODES)
    if "baseline" in modes:  # the row the others are compared with comes first
        modes = ["baseline", *[m for m in modes if m != "baseline"]]
    results = []
    for name in modes:
        root = Path(tempfile.mkdtemp(prefix="paranoim-bench-latency-"))
        try:
            results.append(await measure(root, name, MODES[name], args.paced, args.pace,
                                         args.burst))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n## Send → arrival, two daemons at default settings on loopback "
          f"({args.paced} messages one every {args.pace:g} s, then {args.burst} at once; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})\n")
    print(table(results))
    for name in modes:
        print(f"- {name}: {MODES[name].description}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
