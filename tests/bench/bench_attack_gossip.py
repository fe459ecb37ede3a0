"""Gossip attacks against a real daemon, attacker cost against victim cost:
``.venv/bin/python -m tests.bench.bench_attack_gossip [SECONDS]``.

Each attack runs from its own attacker process (``tests.adversarial.gossip_attacker``)
against a real ``paranoim run`` on loopback whose ``[p2p] memory_budget_mb`` is 64, for
SECONDS (default 20). Printed per attack: the attacker's CPU and bytes sent, the victim's
CPU, its RSS before and at peak, the p99 latency of ``GET /status`` on its P2P port (one
probe every 0.1 s: the event loop's lag as a client sees it), the share of honest
envelopes (one every 0.25 s) delivered through the victim within 5 s, and how long an
honest peer that connects mid-attack takes to get in. A baseline row runs no attack.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from tests.adversarial.gossip_harness import HEADER, row, run_attack

ATTACKS = [  # (attack, links, envelopes stored through the victim first)
    ("light", 0, 0),  # no links: the baseline
    ("want", 4, 0),
    ("have", 8, 0),
    ("have", 30, 0),
    ("watch", 4, 2000),
    ("peers", 4, 0),
    ("light", 40, 0),
]


async def main(seconds: float) -> None:
    print(HEADER)
    for kind, links, prefill in ATTACKS:
        root = Path(tempfile.mkdtemp(prefix="bench-attack-"))
        try:
            o = await run_attack(root, kind, seconds=seconds, links=links, prefill=prefill)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        line = row(o)
        if links == 0:
            line = line.replace(f"| {kind} (0 links)", "| none (baseline)")
        extra = f" watch with {prefill} stored" if prefill else ""
        print(line + extra, flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
