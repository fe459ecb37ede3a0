"""The warm pool of worker processes for CPU-bound work: PoW and vanity search.

Nothing CPU-heavy runs on the event loop. A job is split into bounded ranges
(about a tenth of a second each); one range per worker is in flight at a time
and the next is handed out when one returns. Cancelling stops handing out
ranges, so a cancelled job ends within one range's time and the workers are
free again at once for the next job. Processes start once and stay warm.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import heapq
import itertools
import multiprocessing
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from bridge.core import pow, vanity
from bridge.core.errors import PowCancelledError

POW_RANGE = 1 << 22  # ~0.05–0.1 s of blocks per task
INLINE_BITS = 12  # solved on the crypto thread: faster there than a round trip to a worker
VANITY_RANGE = 1 << 12  # ~0.1 s of key generations per task

P = ParamSpec("P")
T = TypeVar("T")


def _ready() -> int:
    # Held briefly so that one fast worker cannot answer for all of them: warm-up
    # sees every worker's pid, i.e. every worker has imported and initialised.
    time.sleep(0.05)
    return os.getpid()


def _init_worker(parent: int) -> None:
    """Worker initializer. Ctrl-C in a terminal reaches the whole process group;
    only the daemon decides how to stop (it closes the pool), so a worker ignores
    SIGINT. And it exits when the daemon is gone, even if the daemon was killed
    with SIGKILL and could not shut the pool down (orphans would hold a core)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class CryptoLane:
    """One thread that runs short jobs in the order they are handed in.

    Jobs handed in while the thread is busy wait in a queue and are taken together, and
    their results go back to the event loop in one call: under load the hand-over (a
    lock, waking the thread, the GIL, waking the loop) is paid once per batch, not once
    per job as with a thread-pool executor, where it cost the loop as much as the
    sealing it moved off it."""

    def __init__(self, name: str) -> None:
        self._jobs: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any],
                                            Callable[[], Any]]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the crypto thread has stopped")
            self._jobs.append((loop, fut, job))
            if len(self._jobs) == 1:
                self._cond.notify()
        return fut

    def close(self) -> None:
        """Stop taking jobs; return once those in hand are done and the thread has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                batch = list(self._jobs)
                self._jobs.clear()
            self._run_batch(batch)
            # Nothing of a batch may outlive it here: its jobs hold keys, and a cancelled
            # job's future holds the waiting coroutine's frames (a deleted identity's
            # secret key stayed alive in this thread's locals until the next batch).
            del batch

    @staticmethod
    def _run_batch(batch: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any],
                                     Callable[[], Any]]]) -> None:
        done: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any,
                                                         BaseException | None]]] = {}
        try:
            for loop, fut, job in batch:
                try:
                    outcome: tuple[asyncio.Future[Any], Any, BaseException | None] = (
                        fut, job(), None)
                except BaseException as exc:  # handed to the waiting coroutine
                    outcome = (fut, None, exc)
                done.setdefault(loop, []).append(outcome)
            for loop, results in done.items():
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(_settle, results)
        finally:
            batch.clear()


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in results:
        if fut.cancelled():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


@dataclass
class Progress:
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        e = self.elapsed
        return self.attempts / e if e > 0 else 0.0


class WorkerPool:
    """A fixed set of warm processes shared by every CPU-heavy job of the daemon, and
    one thread for the short cryptography of each message (sealing, signing, a
    proof of work of ``INLINE_BITS`` or fewer) that needs the daemon's keys: those
    stay in this process, and libsodium and blake3 let the event loop run while
    they compute."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.pow_range = POW_RANGE  # nonces per task
        # forkserver/spawn: forking a process that runs an event loop and
        # threads is unsafe; spawn also keeps secrets of the parent out.
        ctx = multiprocessing.get_context("spawn")
        self._executor = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
        # Ranges handed to the executor at once (see _run_ranges): two per worker, so the
        # next range already waits at a worker when one ends (no idle round trip through
        # the event loop), and a new proof still starts within one range's time.
        self._free = 2 * self.workers
        self._waiting: list[tuple[tuple[int, int], int, asyncio.AbstractEventLoop,
                                  asyncio.Future[None]]] = []
        self._lock = threading.Lock()
        self._job_numbers = itertools.count()
        self._tiebreak = itertools.count()
        self._crypto = CryptoLane("paranoim-crypto")
        self._closed = False

    async def run_crypto(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``func(*args, **kwargs)`` on the crypto thread, off the event loop."""
        return await self._crypto.submit(functools.partial(func, *args, **kwargs))

    async def _slot(self, priority: tuple[int, int]) -> None:
        """Wait for a free worker slot; the lowest ``priority`` waiting gets it first.

        The pool may serve several event loops (one per test, say) and a range may end
        after the loop that asked for it has closed, so the slots are counted under a
        lock, freed from whichever thread sees a range end, and a waiter is woken on
        its own loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiting, (priority, next(self._tiebreak), loop, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # handed to us as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        """A slot is free: to the first waiter still waiting, else counted free."""
        with self._lock:
            while self._waiting:
                _, _, loop, fut = heapq.heappop(self._waiting)
                if fut.done() or loop.is_closed():
                    continue
                try:
                    loop.call_soon_threadsafe(self._grant, fut)
                except RuntimeError:  # closed meanwhile
                    continue
                return
            self._free += 1

    def _grant(self, fut: asyncio.Future[None]) -> None:
        if fut.done():  # cancelled before the slot reached it
            self._release()
        else:
            fut.set_result(None)

    async def _range(self, priority: tuple[int, int], func: Callable[..., object],
                     args: tuple[object, ...]) -> object:
        """One range on a worker; its slot is free again when the worker is done with
        it, even if the job stopped waiting for it."""
        await self._slot(priority)
        loop = asyncio.get_running_loop()
        try:
            cf = self._executor.submit(func, *args)
        except BaseException:
            self._release()
            raise

        cf.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(cf, loop=loop)

    async def warm_up(self) -> None:
        """Return once every worker process is up, imported and initialised."""
        loop = asyncio.get_running_loop()
        pids: set[int] = set()
        for _ in range(20):
            pids.update(await asyncio.gather(*(loop.run_in_executor(self._executor, _ready)
                                               for _ in range(self.workers))))
            if len(pids) >= self.workers:
                return

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # Wait for the work in hand (one range at most) so the executor's management
            # thread has ended before the interpreter exits: left running, Python 3.12's
            # exit hook wrote to its closed wake-up pipe and the process never exited.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._crypto.close()

    async def _run_ranges(
        self,
        func: Callable[..., object],
        args_for: Callable[[int, int], tuple[object, ...]],
        range_size: int,
        progress: Progress,
        cancelled: asyncio.Event | None,
        start: int = 0,
        rank: int = 0,
    ) -> object:
        """Hand ``func``'s ranges to the workers until one returns something.

        The workers are shared by every job through ``workers`` slots: a free slot goes
        to the waiting job of the lowest ``rank``, then the one that started first. So a
        burst of proofs finishes one after another, the oldest first (not all together
        at the end, as when their ranges took turns), and a long vanity search (rank 1)
        never holds back a message for more than one range."""
        next_start = start
        pending: dict[asyncio.Future[object], int] = {}
        priority = (rank, next(self._job_numbers))

        def submit() -> None:
            nonlocal next_start
            fut = asyncio.ensure_future(
                self._range(priority, func, args_for(next_start, range_size)))
            pending[fut] = next_start
            next_start += range_size

        for _ in range(self.workers):
            submit()
        cancel_wait = asyncio.ensure_future(cancelled.wait()) if cancelled else None
        try:
            while True:
                waiting: set[asyncio.Future[object]] = set(pending)
                if cancel_wait is not None:
                    waiting.add(cancel_wait)  # type: ignore[arg-type]
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if cancel_wait is not None and cancel_wait in done:
                    raise PowCancelledError("the work was cancelled")
                for fut in done:
                    pending.pop(fut)
                    progress.attempts += range_size
                    result = fut.result()
                    if result is not None:
                        progress.finished = time.monotonic()
                        return result
                    submit()
        finally:
            for fut in pending:
                fut.cancel()
            if cancel_wait is not None:
                cancel_wait.cancel()

    async def solve_pow(
        self,
        digest: bytes,
        bits: int,
        *,
        cancelled: asyncio.Event | None = None,
        progress: Progress | None = None,
    ) -> int:
        """A nonce giving ``bits`` leading zero bits. Raises PowCancelledError."""
        if bits <= INLINE_BITS:  # faster on the crypto thread than a round trip to a worker
            nonce = await self.run_crypto(pow.solve_range, digest, bits, 0, 1 << 20)
            if nonce is not None:
                return nonce
        # A random start keeps two solvers of the same digest from duplicating work
        # and makes the nonce reveal nothing about how many tries were needed.
        start = secrets.randbelow(1 << 40)
        result = await self._run_ranges(
            pow.solve_range, lambda s, n: (digest, bits, s, n), self.pow_range,
            progress or Progress(), cancelled, start)
        assert isinstance(result, int)
        return result

    async def vanity_seed(
        self,
        prefix: str,
        *,
        cancelled: asyncio.Event | None = None,
        progress: Progress | None = None,
    ) -> bytes:
        """A 32-byte Ed25519 seed whose address starts with ``prefix``."""
        p = vanity.normalize_prefix(prefix)
        base = secrets.token_bytes(24)
        result = await self._run_ranges(
            vanity.search_range, lambda s, n: (p, base, s, n), VANITY_RANGE,
            progress or Progress(), cancelled, rank=1)
        assert isinstance(result, bytes)
        return result
