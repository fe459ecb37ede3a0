"""The warm worker pool with real processes: PoW and vanity off the event loop."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from bridge.core import pow
from bridge.core.errors import PowCancelledError
from bridge.core.identity import Identity
from bridge.net.workers import Progress, WorkerPool


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    yield p
    p.close()


async def test_solve_pow_in_workers(pool: WorkerPool) -> None:
    await pool.warm_up()
    digest = os.urandom(32)
    nonce = await pool.solve_pow(digest, 18)
    assert pow.work_bits(digest, nonce) >= 18


async def test_event_loop_stays_responsive_while_solving(pool: WorkerPool) -> None:
    """Ticks of 10 ms keep coming while a 22-bit solve runs in the workers."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    started = time.monotonic()
    await pool.solve_pow(os.urandom(32), 22)
    elapsed = time.monotonic() - started
    stop.set()
    await t
    # if the loop had been blocked, there would be (almost) no ticks
    assert ticks >= min(5, int(elapsed / 0.01) // 4)


async def test_cancel_stops_pow_quickly_and_pool_stays_usable(pool: WorkerPool) -> None:
    cancelled = asyncio.Event()
    progress = Progress()
    task = asyncio.create_task(pool.solve_pow(os.urandom(32), 60, cancelled=cancelled,
                                              progress=progress))
    while progress.attempts == 0:  # wait until work is really under way
        await asyncio.sleep(0.01)
    cancelled.set()
    with pytest.raises(PowCancelledError):
        await asyncio.wait_for(task, 5)
    digest = os.urandom(32)
    nonce = await asyncio.wait_for(pool.solve_pow(digest, 16), 10)
    assert pow.verify(digest, nonce, 16)


async def test_vanity_in_workers_with_progress(pool: WorkerPool) -> None:
    progress = Progress()
    seed = await pool.vanity_seed("ab", progress=progress)
    assert Identity.from_seed(seed).address.startswith("ab")
    assert progress.attempts > 0 and progress.rate > 0


async def test_vanity_cancel(pool: WorkerPool) -> None:
    cancelled = asyncio.Event()
    progress = Progress()
    task = asyncio.create_task(pool.vanity_seed("zzzzzzz", cancelled=cancelled,
                                                progress=progress))
    while progress.attempts == 0:
        await asyncio.sleep(0.01)
    cancelled.set()
    with pytest.raises(PowCancelledError):
        await asyncio.wait_for(task, 5)


def test_workers_exit_when_the_daemon_is_killed(tmp_path) -> None:
    """A daemon killed with SIGKILL cannot shut its pool down; the workers notice
    their parent is gone and exit instead of lingering."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from bridge.net.workers import WorkerPool\n"
        "async def main():\n"
        "    pool = WorkerPool(2)\n"
        "    await pool.warm_up()\n"
        "    pids = [p.pid for p in pool._executor._processes.values()]\n"
        "    print(' '.join(map(str, pids)), flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
