"""Attacks on connection slots and the address book, against a real ``paranoim run``:
attacker cost against victim cost, and how long an honest peer takes to get in.

    .venv/bin/python -m tests.bench.bench_attack_slots [seconds per attack]

Each attack runs for the given time (default 15 s) against a fresh daemon on
loopback; an honest peer connects five times during it (from 127.9.9.9, a /24 of
its own). CPU is user + system seconds over the attack; RSS the peak of the
whole run.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.adversarial.slots_support import honest_connect, start_attacker, stop_attacker, usage
from tests.daemonproc import Paranoim
from tests.util import free_tcp_port

ATTACKS = [
    ("none (baseline)", None),
    ("64 sockets, no HELLO, from 127.0.0.1", ("idle", "64", "one")),
    ("64 sockets, no HELLO, 64 /24s", ("idle", "64", "spread")),
    ("64 links, HELLO then silence, 127.0.0.1", ("hello", "64", "one")),
    ("64 links, HELLO then silence, 64 /24s", ("hello", "64", "spread")),
    ("1,000 junk addresses by PEERS", ("flood", "1000")),
]


async def one(name: str, attack: tuple[str, ...] | None, seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        pim = Paranoim(Path(tmp))
        try:
            daemon = pim.start_daemon(free_port=free_tcp_port)
            port = int(pim.runtime()["ports"]["p2p"])  # type: ignore[index]
            before = usage(daemon.proc.pid)
            attacker = None
            if attack is not None:
                mode, *rest = attack
                attacker = start_attacker(mode, str(port), *rest)
                attacker.wait_for("ready", 30)
            start = time.monotonic()
            lat = []
            for i in range(5):
                lat.append((await honest_connect(port, timeout=30))[0])
                left = start + seconds * (i + 1) / 5 - time.monotonic()
                if left > 0:
                    await asyncio.sleep(left)  # spread the honest peer's visits over the attack
            status = time.monotonic()
            ok = pim.run("status", timeout=60).returncode == 0
            status_s = time.monotonic() - status
            after = usage(daemon.proc.pid)
            stats = stop_attacker(attacker) if attacker is not None else {}
        finally:
            pim.cleanup()
    return [name,
            f"{stats.get('cpu', 0):.2f}", f"{int(stats.get('connects', 0))}",
            f"{after.cpu - before.cpu:.2f}", f"{after.peak_rss_kib / 1024:.0f}",
            f"{statistics.median(lat) * 1000:.0f} / {max(lat) * 1000:.0f}",
            f"{status_s:.1f}" + ("" if ok else " (failed)"),
            f"{int(stats['dialled'])}" if "dialled" in stats else "-"]


async def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    head = ["attack", "attacker CPU s", "attacker connects", "victim CPU s",
            "victim peak RSS MiB", "honest connect ms (median / max)", "status s",
            "junk dialled"]
    rows = [await one(name, attack, seconds) for name, attack in ATTACKS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    asyncio.run(main())
