"""Every attack on a node, each from its own attacker process against a real
``paranoim run`` (default settings, RAM store), as one table:

    .venv/bin/python -m tests.bench.bench_attack [--quick] [--seconds S] [ATTACK ...]
    .venv/bin/python -m tests.bench.bench_attack --list

Per attack (``tests.adversarial.gossip_harness``): the attacker's CPU seconds and
the victim's over the attack, their ratio, the victim's RSS before and at its peak
(with its memory budget), the p99 latency of ``GET /status`` on its P2P port (one
probe every 0.1 s: its event-loop lag as a client sees it), the share of honest
envelopes (one every 0.25 s) delivered through the victim within 5 s, and how
long an honest node that connects mid-attack takes to get in. The honest nodes
and the probe come from loopback /24s of their own; attackers "from 127.0.0.1"
share the address every onion peer arrives from. ``--quick`` runs each attack
6 s instead of 20 (about 3 minutes for all, against about 7 here).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from bridge.core import pow
from tests.adversarial.gossip_harness import HEADER, Attack, gossip_attack, row, run_attack

PY = sys.executable
WEEK = 7 * 86_400
SPAM_SIZE = 65_618  # the largest envelope
STORE_MB = 4  # the store the spam row fills (the default share, 212 MiB, takes minutes)


def attacks(seconds: float) -> dict[str, Attack]:
    spam = 1 << pow.required_bits(SPAM_SIZE, WEEK, 1)  # hashes per spam envelope at base 1
    slots = [PY, "-m", "tests.adversarial.slots_attacker"]
    return {
        "baseline": Attack("none (baseline)", [
            PY, "-c", "import sys; print('started', flush=True); sys.stdin.read(); print('{}')"],
            seconds),
        "strangers": Attack("1,500 first contacts from fresh identities, one link", [
            PY, "-m", "tests.adversarial.stranger_flood", "{address}", "{p2p}", "1500", "1"],
            seconds),
        "want": gossip_attack("want", seconds, 4),
        "watch": gossip_attack("watch", seconds, 4, prefill=2000),
        "have": gossip_attack("have", seconds, 30),
        "peers": gossip_attack("peers", seconds, 4),
        "idle": Attack("64 sockets, no HELLO, from 127.0.0.1",
                       [*slots, "idle", "{port}", "64", "one"], seconds),
        "silent": Attack("64 links, HELLO then silence, from 64 /24s",
                         [*slots, "hello", "{port}", "64", "spread"], seconds),
        "churn": Attack("reconnect churn, 112 sockets from 127.0.0.1",
                        [*slots, "churn", "{port}", "112", "one"], seconds),
        "churn-spread": Attack("reconnect churn, 112 sockets from 112 /24s",
                               [*slots, "churn", "{port}", "112", "spread"], seconds),
        "store": Attack(f"week-long 64 KiB spam, twice a {STORE_MB} MiB store",
                        [PY, "-m", "tests.adversarial.store_attacker", "{p2p}",
                         str(2 * STORE_MB * (1 << 20) // SPAM_SIZE * spam), "1"],
                        seconds, config=f"store_mb = {STORE_MB}\n"),
    }


NOTES = {
    "want": "128 bodies of 64 KiB, then WANTs for them round and round on links that never read",
    "watch": "WATCH_SHARD as fast as it can, light links, 2,000 envelopes stored",
    "have": "HAVE of random ids never delivered",
    "peers": "PEERS of 32 junk addresses as fast as it can",
}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("attack", nargs="*", help="which attacks (default: all; see --list)")
    ap.add_argument("--quick", action="store_true", help="6 s per attack instead of 20")
    ap.add_argument("--seconds", type=float, help="seconds per attack")
    ap.add_argument("--list", action="store_true", help="name the attacks and exit")
    args = ap.parse_args()
    seconds = args.seconds or (6.0 if args.quick else 20.0)
    table = attacks(seconds)
    if args.list:
        for key, a in table.items():
            print(f"{key:13} {a.name}")
        return
    unknown = [k for k in args.attack if k not in table]
    if unknown:
        ap.error(f"unknown attack {', '.join(unknown)}; --list names them")
    chosen = args.attack or list(table)
    print(f"{seconds:g} s per attack; victim: paranoim run, default settings, RAM store\n")
    print(HEADER, flush=True)
    for key in chosen:
        attack = table[key]
        root = Path(tempfile.mkdtemp(prefix="bench-attack-"))
        try:
            o = await run_attack(root, attack, budget_mb=None)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        line = row(o)
        if key in NOTES:
            line = line.replace(f"| {attack.name} |", f"| {attack.name}: {NOTES[key]} |", 1)
        print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
