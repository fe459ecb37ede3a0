"""Vanity address jobs: run in the worker pool, watched by the web UI.

A job searches for a key whose address starts with a prefix, reports progress
(attempts, rate, elapsed, expected attempts) and becomes a new identity when
found. The rate used for estimates is measured from finished work, starting
from a conservative guess.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.core import vanity
from bridge.core.errors import PowCancelledError, UserError
from bridge.events import IdentityInfo
from bridge.net.workers import Progress

if TYPE_CHECKING:
    from bridge.service import Service

KEYS_PER_SECOND_GUESS = 40_000.0  # per worker, until measured


@dataclass
class VanityStatus:
    attempts: int
    rate: float
    elapsed: float
    expected_attempts: float
    done: bool
    cancelled: bool
    error: str
    address: str


class VanityJob:
    def __init__(self, runner: VanityJobRunner, prefix: str, nick: str) -> None:
        self.id = secrets.token_urlsafe(8)
        self.prefix = prefix
        self.nick = nick
        self._runner = runner
        self._progress = Progress()
        self._cancel = asyncio.Event()
        self._result: IdentityInfo | None = None
        self._error = ""
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> IdentityInfo:
        try:
            seed = await self._runner.service.pool.vanity_seed(
                self.prefix, cancelled=self._cancel, progress=self._progress)
            self._runner.measured(self._progress.rate)
            self._result = self._runner.service.add_identity_seed(seed, self.nick)
            return self._result
        except PowCancelledError:
            self._error = "cancelled"
            raise PowCancelledError("the vanity search was cancelled") from None
        except UserError as exc:
            self._error = str(exc)
            raise

    def progress(self) -> VanityStatus:
        p = self._progress
        return VanityStatus(
            attempts=p.attempts, rate=p.rate, elapsed=p.elapsed,
            expected_attempts=vanity.expected_attempts(self.prefix),
            done=self._task.done(), cancelled=self._cancel.is_set(), error=self._error,
            address=self._result.address if self._result else "")

    def cancel(self) -> None:
        self._cancel.set()

    async def wait(self) -> IdentityInfo:
        return await asyncio.shield(self._task)


class VanityJobRunner:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.jobs: dict[str, VanityJob] = {}
        self._rate = 0.0

    @property
    def keys_per_second(self) -> float:
        return self._rate or KEYS_PER_SECOND_GUESS * self.service.pool.workers

    def measured(self, rate: float) -> None:
        if rate > 0:
            self._rate = rate

    def start(self, prefix: str, nick: str) -> VanityJob:
        job = VanityJob(self, prefix, nick)
        self.jobs[job.id] = job
        # keep only the latest few finished jobs
        for old in [j for j in self.jobs.values() if j.progress().done][:-8]:
            self.jobs.pop(old.id, None)
        return job

    def get(self, job_id: str) -> VanityJob | None:
        return self.jobs.get(job_id)

    def cancel_all(self) -> None:
        for job in self.jobs.values():
            job.cancel()
