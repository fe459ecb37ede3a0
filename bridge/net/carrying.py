"""Carrying shards automatically: the node's depth kept where its budget allows.

With ``[p2p] shards = "auto"`` a node does not carry a fixed list of prefixes: it
measures the bytes it stores a day under what it carries (every envelope the node
accepts, its own included, that falls under its prefixes) and, once a minute, asks
``core.depth.next_depth`` whether to carry one bit deeper or one bit shallower. It
starts at depth 0 (everything: a small network needs no shards) and the prefixes it
carries are always those of its own shard keys — its identities' and their rooms',
the shards a light node would ask for — at that depth; a node without identities (a
relay) draws one shard key at random when it starts.

A change of depth changes the HELLO: ``Node.carry`` says goodbye on every link so each
is made again under the new prefixes. Envelopes already stored under a part no longer
carried stay until they expire; they are not reconciled any more. The floor counts
carriers this node has dialled and been answered by, with the prefixes of their HELLO
(peer exchange's word is not taken): to let a node narrow into a thin shard an attacker
must run the nodes it claims; no peer can make a node within its budget narrow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.core.depth import DepthRule, Intake, carried, next_depth
from bridge.core.envelope import Envelope
from bridge.core.shards import Prefix, holds, shard_of_raw

if TYPE_CHECKING:
    from bridge.net.node import Node

log = logging.getLogger(__name__)
INTERVAL = 60.0  # seconds between two looks at the intake


class Carrying:
    """Keeps ``node`` carrying the prefixes of ``keys()`` at the depth ``rule`` allows."""

    def __init__(self, node: Node, rule: DepthRule, keys: Callable[[], tuple[int, ...]],
                 *, clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL
                 ) -> None:
        self.node, self.rule, self.clock, self.interval = node, rule, clock, interval
        self._keys = keys
        self._spare = int.from_bytes(os.urandom(2), "big")  # a relay's own shard key
        self.depth = 0
        self.intake = Intake()
        self.changes: list[tuple[float, int]] = []  # (when, depth), the last few
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def keys(self) -> tuple[int, ...]:
        return tuple(sorted(set(self._keys()))) or (self._spare,)

    def start(self) -> None:
        self.intake.start(self.clock())
        self._unsubscribe = self.node.subscribe(self._on_envelope)
        self.apply()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="carrying")

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _on_envelope(self, env: Envelope) -> None:
        if holds(self.node.config.shards, shard_of_raw(env.raw)):
            self.intake.add(self.clock(), len(env.raw))

    def carriers(self, p: Prefix) -> int:
        """Nodes that carry all of ``p`` by their own HELLO: the address book's entries
        this node dialled and was answered by (what peer exchange says is not counted)."""
        return sum(1 for e in self.node.book.book.entries()
                   if e.last_good is not None and any(q.contains(p) for q in e.shards))

    def step(self) -> bool:
        """One look at the intake; True if the depth changed."""
        now = self.clock()
        depth = next_depth(self.depth, self.keys(), self.intake.per_day(now),
                           self.intake.measured_for(now), self.rule, self.carriers)
        if depth == self.depth:
            self.apply()  # identities may have come or gone
            return False
        log.info("carrying shards at depth %d instead of %d (%.0f MB a day taken in)",
                 depth, self.depth, self.intake.per_day(now) / 1e6)
        self.depth = depth
        self.changes = [*self.changes[-9:], (now, depth)]
        self.intake.start(now)
        self.apply()
        return True

    def apply(self) -> None:
        self.node.carry(carried(self.keys(), self.depth))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.step()
            except Exception:  # a bug here must not stop the node carrying what it does
                log.exception("choosing the depth failed; the node keeps its prefixes")
