"""SQLite store benchmarks, one run: ``.venv/bin/python -m tests.bench.bench_store``.

Envelopes stored per second with ``synchronous=FULL`` (each commit fsynced), group
commit against the per-envelope commit baseline (``group_commit=False``: every
``add`` commits before it returns, on the event loop), in the same run, on the
same disk (the directory given as the first argument, default: the system's
temporary directory):

1. the store alone: envelopes arriving from 1, 16 or 64 sources at once (a
   source stores one, waits until it is durable, stores the next, as a peer link
   or a local sender does); envelopes per commit, and the longest the event loop
   was held up (a ticker every millisecond measures how late it runs);
2. two nodes on loopback: one publishes, the other, on SQLite, receives every
   envelope, stores it and hands it on; time until the last one is handed on.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

from bridge.core.envelope import Envelope
from bridge.net.node import Node
from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import fast_config, linked, make_envelope, stop_all, wait_all


class LoopLag:
    """How late a 1 ms ticker wakes: the longest the event loop was held up."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t - 0.001)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def store_run(
    path: str, envs: list[Envelope], sources: int, *, group: bool
) -> tuple[float, int, float]:
    """(envelopes/s, commits, worst loop lag in s) for ``envs`` from ``sources`` at once."""
    store = SQLiteStore(path, group_commit=group)
    now = int(time.time())
    share = [envs[i::sources] for i in range(sources)]

    async def source(mine: list[Envelope]) -> None:
        for e in mine:
            assert store.add(e, now)
            await store.flush()  # durable before the next (a no-op when add committed)
            await asyncio.sleep(0)  # the next arrives through the loop, as a frame would

    with LoopLag() as lag:
        t0 = time.perf_counter()
        await asyncio.gather(*(source(m) for m in share))
        dt = time.perf_counter() - t0
    commits = store.commits
    store.close()
    return len(envs) / dt, commits, lag.worst


async def node_run(path: str, envs: list[Envelope], *, group: bool) -> float:
    """Envelopes/s a node on SQLite takes in from a peer and hands on, durable."""
    store = SQLiteStore(path, group_commit=group)
    sender = Node(fast_config(anti_entropy_interval=60))
    receiver = Node(fast_config(anti_entropy_interval=60), store=store)
    await sender.start()
    await receiver.start()
    try:
        receiver.add_peer(f"127.0.0.1:{sender.port}")
        await wait_all([sender, receiver], linked(1), 10)
        heard: list[bytes] = []
        receiver.subscribe(lambda e: heard.append(e.id))
        t0 = time.perf_counter()
        for e in envs:
            await sender.publish(e.raw)
        await receiver.wait_for(lambda: len(heard) == len(envs), 120)
        return len(envs) / (time.perf_counter() - t0)
    finally:
        await stop_all([sender, receiver])
        store.close()


async def main(where: str) -> None:
    print("# bench_store", time.strftime("%Y-%m-%d %H:%M"), f"(pid {os.getpid()}, dir {where})")
    now = int(time.time())
    count = 2000
    envs = [make_envelope(now, bucket=1024) for _ in range(count)]
    size = len(envs[0].raw)
    with tempfile.TemporaryDirectory(dir=where) as d:
        runs = iter(range(1_000_000))

        def fresh() -> str:
            return os.path.join(d, f"s{next(runs)}.db")

        print(f"\n## SQLite store, synchronous=FULL, {count:,} envelopes of {size} bytes\n")
        print("| sources at once | per-envelope commit | group commit | ratio "
              "| envelopes per commit | worst loop lag: per-envelope / group |")
        print("|---|---|---|---|---|---|")
        for sources in (1, 16, 64):
            base, _, base_lag = await store_run(fresh(), envs, sources, group=False)
            rate, commits, lag = await store_run(fresh(), envs, sources, group=True)
            print(f"| {sources} | {base:,.0f}/s | {rate:,.0f}/s | {rate / base:.1f}x "
                  f"| {count / commits:.1f} | {base_lag * 1000:.1f} ms / {lag * 1000:.1f} ms |")

        print(f"\n## a node on SQLite taking in {count:,} envelopes from a peer (loopback)\n")
        print("| per-envelope commit | group commit | ratio |\n|---|---|---|")
        base = await node_run(fresh(), envs, group=False)
        rate = await node_run(fresh(), envs, group=True)
        print(f"| {base:,.0f}/s | {rate:,.0f}/s | {rate / base:.1f}x |")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()))
