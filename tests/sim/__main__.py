"""Run the simulator and print its table.

    python -m tests.sim                                  # 100 and 1,000 nodes, full replication
    python -m tests.sim --sizes 100,1000,10000 --shards auto --model 100000,1000000
    python -m tests.sim --doc                            # the table in docs/sharding.md

``--shards k`` simulates 2**k shards at every size beside full replication;
``--shards auto`` picks k per size so a shard holds about ``--shard-nodes`` nodes.
Sizes too large to simulate in full get the model's prediction (``--model``), calibrated
on the smallest simulated run of each mode and checked against the others.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tests.sim.model import calibrate, predict
from tests.sim.world import Config, Result, World

DOC_ARGS = ["--sizes", "100,1000,10000", "--shards", "auto", "--model", "100000,1000000",
            "--minutes", "5", "--min-messages", "300", "--drain", "6", "--full-max", "1000"]
DOC = Path(__file__).resolve().parents[2] / "docs" / "sharding.md"
BEGIN, END = "<!-- simulator table: python -m tests.sim --doc -->", "<!-- end of table -->"


def auto_k(nodes: int, per_shard: int) -> int:
    return max(1, round(math.log2(max(2, nodes / per_shard))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="network sizes simulated in full")
    p.add_argument("--shards", default="", help="k (2**k shards), 'auto', or '' for none")
    p.add_argument("--shard-nodes", type=int, default=128, help="nodes per shard for 'auto'")
    p.add_argument("--full-max", type=int, default=10**9,
                   help="largest size simulated with full replication (the model beyond)")
    p.add_argument("--model", default="", help="sizes given by the model only")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=float, default=20.0, help="sending window")
    p.add_argument("--min-messages", type=int, default=0,
                   help="lengthen the window of small networks to send at least this many")
    p.add_argument("--drain", type=float, default=10.0, help="minutes after sending stops")
    p.add_argument("--rate", type=float, default=3.0, help="messages per user per hour")
    p.add_argument("--churn", type=float, default=0.10, help="share of nodes leaving per hour")
    p.add_argument("--hostile", type=float, default=0.05)
    p.add_argument("--carry", type=int, default=1, help="shards each node carries")
    p.add_argument("--doc", action="store_true", help="the run whose table docs/sharding.md shows")
    args = list(sys.argv[1:] if argv is None else argv)
    a = p.parse_args(DOC_ARGS + args if "--doc" in args else args)
    sizes = [int(x) for x in a.sizes.split(",") if x]
    results: list[Result] = []
    print(f"seed {a.seed}; {a.rate:g} messages/user/hour for {a.minutes:g} min, then "
          f"{a.drain:g} min drain; churn {a.churn:.0%}/h; hostile {a.hostile:.0%}", flush=True)
    for n in sizes:
        modes: list[int] = []
        if n <= a.full_max:
            modes.append(0)
        if a.shards:
            modes.append(auto_k(n, a.shard_nodes) if a.shards == "auto" else int(a.shards))
        for k in modes:
            honest_per_minute = n * (1 - a.hostile) * a.rate / 60
            minutes = max(a.minutes, a.min_messages / honest_per_minute)
            cfg = Config(nodes=n, seed=a.seed, shards_k=k, carry=a.carry, minutes=minutes,
                         drain=a.drain, rate=a.rate, churn=a.churn, hostile=a.hostile)
            r = World(cfg).run()
            results.append(r)
            print(row(r), file=sys.stderr, flush=True)
    print()
    head = (f"Seed {a.seed}; {a.rate:g} messages of 1 KiB a user an hour for {a.minutes:g} "
            f"minutes (longer for small networks: at least {a.min_messages} messages), then "
            f"{a.drain:g} minutes of drain; churn {a.churn:.0%} an hour; {a.hostile:.0%} "
            "hostile nodes.")
    text = head + "\n\n" + table(results, a)
    print(text)
    if a.doc:
        doc = DOC.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])
        print(f"\nwritten to {DOC}")
    return 0


HEADER = ("| nodes | mode | nodes/shard | messages | delivered | p50 s | p99 s | p99 s, all "
          "| sent MB/node/day | stored MB/node/day | reconcile MB/node/day | wall s |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def row(r: Result) -> str:
    mb = 1e6
    return (f"| {r.nodes:,} | {r.mode} | {r.shard_nodes:,.0f} | {r.messages:,} | "
            f"{r.ratio:.2%} ({r.delivered:,}/{r.eligible:,}) | {r.p50:.2f} | {r.p99:.1f} | "
            f"{r.p99_all:.0f} | "
            f"{r.sent_per_day / mb:,.1f} | {r.stored_per_day / mb:,.1f} | "
            f"{r.recon_per_day / mb:,.2f} | {r.wall:.0f} |")


def table(results: list[Result], a: argparse.Namespace) -> str:
    lines = [HEADER, *(row(r) for r in results)]
    sizes = [int(x) for x in a.model.split(",") if x]
    model = calibrate(results)
    if model:
        lines.append("")
        lines.append("Model (per node per day at the same per-user rate; calibrated on the "
                     "smallest run of each mode):")
        lines.append("")
        lines.append("| nodes | mode | nodes/shard | sent MB/node/day (model) | simulated | "
                     "stored MB/node/day (model) | simulated |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|")
        for r in results:
            m = predict(model, r, r.nodes, r.mode, r.shard_nodes)
            if m is not None:
                lines.append(f"| {r.nodes:,} | {r.mode} | {r.shard_nodes:,.0f} | "
                             f"{m[0] / 1e6:,.1f} | {r.sent_per_day / 1e6:,.1f} | "
                             f"{m[1] / 1e6:,.1f} | {r.stored_per_day / 1e6:,.1f} |")
        for n in sizes:
            for mode, per in (("full", float(n)),
                              (f"k={auto_k(n, a.shard_nodes)}",
                               n / (1 << auto_k(n, a.shard_nodes)))):
                m = predict(model, results[0] if results else None, n, mode, per)
                if m is not None:
                    lines.append(f"| {n:,} | {mode} | {per:,.0f} | {m[0] / 1e6:,.1f} | — | "
                                 f"{m[1] / 1e6:,.1f} | — |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
