"""One way for commands to act, whether or not the daemon runs.

``open_backend`` hands a command either the running daemon (over the control
channel, so the change reaches connected clients at once) or, when no daemon
runs, the key file opened directly under the data directory's lock, with a
service over a node that never touches the network. Both answer with the same
dicts (see ``bridge.operations``), from the same table of verbs, and fail with
the same errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.control import (
    ControlClient,
    DaemonNotRunningError,
    running_daemon,
    wait_for_lock_or_daemon,
)
from bridge.core.errors import PowCancelledError
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.operations import VERBS, Json, Naming, Operations, perform
from bridge.service import Service
from bridge.store.keystore import Keystore, OnceKeystore, PassphraseNeededError

ENV_PASSPHRASE = "PARANOIM_PASSPHRASE"  # noqa: S105 - the variable's name


def passphrase_for(data_dir: Path) -> str | None:
    """The key file's passphrase: PARANOIM_PASSPHRASE, else a prompt if the file is
    encrypted and there is a terminal; None for a plain (or absent) key file."""
    env = os.environ.get(ENV_PASSPHRASE)
    if env:
        return env
    if not Keystore(data_dir).encrypted:
        return None
    if sys.stdin.isatty():
        return getpass.getpass(f"Passphrase for the keys in {data_dir}: ") or None
    raise PassphraseNeededError(
        f"the keys in {data_dir} are encrypted: set {ENV_PASSPHRASE} or run this in a terminal")


class _OfflinePool(WorkerPool):
    """Vanity search works offline; proof of work is for sending, which needs the daemon."""

    async def solve_pow(self, *args: Any, **kwargs: Any) -> int:
        raise PowCancelledError("not sent now: the daemon is not running")


class Backend:
    """The verbs commands use (``bridge.operations.VERBS``); ``remote`` tells whether a
    daemon answers them. Arguments are strings; None stands for ""."""

    remote = False

    async def call(self, verb: str, **kw: str | None) -> Any:
        return await self._call(verb, {k: v or "" for k, v in kw.items()})

    async def _call(self, verb: str, args: dict[str, str]) -> Any:
        raise NotImplementedError


class RemoteBackend(Backend):
    remote = True

    def __init__(self, client: ControlClient) -> None:
        self.client = client

    async def _call(self, verb: str, args: dict[str, str]) -> Any:
        return await self.client.call(verb, **args)


class LocalBackend(Backend):
    def __init__(self, ops: Operations, data_dir: Path) -> None:
        self.ops = ops
        self.data_dir = data_dir

    async def _call(self, verb: str, args: dict[str, str]) -> Any:
        if VERBS[verb].daemon_only:
            raise DaemonNotRunningError(not_running(self.data_dir))
        return await perform(self.ops, verb, args)


@contextlib.asynccontextmanager
async def open_backend(cfg: Config, data_dir: Path) -> AsyncIterator[Backend]:
    lock, rt = await asyncio.to_thread(wait_for_lock_or_daemon, data_dir)
    if rt is not None:
        yield RemoteBackend(ControlClient(rt))
        return
    assert lock is not None
    pool: WorkerPool | None = None
    service: Service | None = None
    # Offline, the service's failed announcements are expected, not news.
    logging.getLogger("bridge.service").setLevel(logging.ERROR)
    try:
        keystore = OnceKeystore(data_dir, passphrase_for(data_dir))
        await asyncio.to_thread(keystore.load)
        pool = _OfflinePool()
        service = Service(keystore, LocalNode(cfg.difficulty), pool, base_bits=cfg.difficulty)
        # invitations made while the daemon is stopped carry what its own would
        # (but not an onion address: that is known once Tor has made it)
        service.peerbook.bootstrap = list(dict.fromkeys(p for p in (cfg.announce, *cfg.peers)
                                                     if p))[:8]
        await service.start()
        yield LocalBackend(Operations(service, naming=Naming(cfg, data_dir)), data_dir)
    finally:
        if service is not None:
            await service.stop()
        if pool is not None:
            pool.close()
        lock.release()


def not_running(data_dir: Path) -> str:
    return f"ParanoIM is not running for {data_dir}; start it with `paranoim run`"


def daemon_status(data_dir: Path) -> Json | None:
    rt = running_daemon(data_dir)
    return rt.doc if rt else None
