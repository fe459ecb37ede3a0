"""Outbound links: keep configured peers connected, reconnecting with backoff.

Configured peers (bootstrap, ``add_peer``) are kept for good: a task per
address reconnects after every loss, waiting ``backoff_min`` doubling to
``backoff_max`` (with jitter, so a restarted node is not hit by all its peers
at once), and resets to the minimum after a link that lasted. Addresses heard
through peer exchange are dialled once each while the node has fewer links
than ``target_peers``. An address found to be this very node is dropped for
good: its loop ends, and it is never dialled again.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

import aiohttp

from bridge.core.gossip_wire import MAX_FRAME_SIZE

if TYPE_CHECKING:
    from bridge.net.node import Node

STABLE_AFTER = 10.0  # a link that lasted this long resets the backoff


class Dialer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.kept: dict[str, asyncio.Task[None]] = {}
        self.tried: dict[str, float] = {}  # discovered address -> when last dialled

    def keep(self, addr: str) -> None:
        """Keep ``addr`` (canonical, not this node's own) linked, redialling after losses."""
        if addr in self.kept:
            return
        self.kept[addr] = self.node.tasks.spawn(self._keep_loop(addr), name=f"keep {addr}")

    def forget(self, addr: str) -> None:
        task = self.kept.pop(addr, None)
        if task is not None:
            task.cancel()

    def stop(self) -> None:
        for t in self.kept.values():
            t.cancel()
        self.kept.clear()

    def connected_to(self, addr: str) -> bool:
        return any(addr in (c.dialled, c.address) for c in self.node.conns)

    def discover(self) -> None:
        """Dial heard-of addresses while below the target link count."""
        node = self.node
        missing = node.config.target_peers - len(node.conns)
        if missing <= 0 or not node.started:
            return
        now = time.monotonic()
        cands = [
            a
            for a in node.known
            if a not in self.kept
            and not self.connected_to(a)
            and a not in node.selves
            and now - self.tried.get(a, -1e9) > node.config.backoff_max
            and not node.links.banned(a)
        ]
        for addr in random.sample(cands, min(missing, len(cands))):
            self.tried[addr] = now
            node.tasks.spawn(self.dial(addr), name=f"dial {addr}")

    async def dial(self, addr: str) -> bool:
        """One connection attempt, run until the link closes; True if it ever opened."""
        node = self.node
        session = node._session
        if (session is None or node.links.banned(addr) or self.connected_to(addr)
                or addr in node.selves):
            return False
        try:
            ws = await session.ws_connect(
                f"http://{addr}/p2p",
                max_msg_size=MAX_FRAME_SIZE,
                heartbeat=30.0,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            node.recent_errors.append(f"dial {addr}: {type(e).__name__}")
            return False
        conn = ws._response.connection
        transport = conn.transport if conn is not None else None
        host = addr.rsplit(":", 1)[0]
        await node.links.run_link(ws, outbound=True, remote=host, dialled=addr, transport=transport)
        return True

    async def _keep_loop(self, addr: str) -> None:
        cfg = self.node.config
        delay = cfg.backoff_min
        while addr not in self.node.selves:
            if not self.connected_to(addr):
                start = time.monotonic()
                opened = await self.dial(addr)
                if opened and time.monotonic() - start > STABLE_AFTER:
                    delay = cfg.backoff_min
                else:
                    delay = min(cfg.backoff_max, delay * 2) if not opened else delay
                if addr in self.node.selves:
                    break
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        if self.kept.get(addr) is asyncio.current_task():
            del self.kept[addr]  # found to be this node: nothing left to keep
