"""Outbound links: keep configured peers connected, reconnecting with backoff.

Configured peers (bootstrap, ``add_peer``) are kept for good: a task per
address reconnects after every loss, waiting ``backoff_min`` doubling to
``backoff_max`` (with jitter, so a restarted node is not hit by all its peers
at once), and resets to the minimum after a link that lasted. Addresses from
the address book (``bridge.core.addrbook``) are dialled while the node has
fewer outbound links than ``target_peers`` — inbound links never take those
slots — under limits: at most ``DIAL_BURST`` discovery dials at once, refilled
at ``DIAL_RATE`` per second; one address at most once per ``backoff_max``,
doubling with each failure; while a global address's /16 already has an
outbound link, none other of it is dialled (an attacker's many addresses in one
network cannot take all outbound slots); an address whose node is known to carry
none of this node's shard prefixes is not dialled (such a link would carry nothing
but addresses); a stranger's DNS name is resolved once,
not dialled if it points into a range a stranger may not make us dial, and
otherwise dialled at the address that was checked (the name goes in the Host
header), so a second answer from the name's server cannot point the connection
elsewhere (DNS rebinding). An address
found to be this very node is dropped for good: its loop ends, and it is never
dialled again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import aiohttp

from bridge.core.addrbook import Scope, group, ip_scope, scope_of
from bridge.core.gossip_wire import MAX_FRAME_SIZE
from bridge.core.peers import peer_host
from bridge.core.shards import overlaps

if TYPE_CHECKING:
    from bridge.net.node import Node

STABLE_AFTER = 10.0  # a link that lasted this long resets the backoff
DIAL_RATE: Final = 0.5  # discovery dials per second, on average
DIAL_BURST: Final = 4  # and at most this many at once
DIAL_TIMEOUT: Final = 20.0  # to open a link (TCP, Tor, WebSocket handshake)


class Dialer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.kept: dict[str, asyncio.Task[None]] = {}
        self.tried: dict[str, float] = {}  # discovered address -> when last dialled
        self.dialling: set[str] = set()  # discovery dials not yet open
        self.tokens = float(DIAL_BURST)
        self._refilled = time.monotonic()
        self._rng = random.Random()
        self.resolve = self._getaddrinfo  # host -> IP addresses (tests give their own)

    @staticmethod
    async def _getaddrinfo(host: str) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

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
        """Dial addresses from the book while below the target of outbound links."""
        node = self.node
        if not node.started:
            return
        now = time.monotonic()
        self.tokens = min(DIAL_BURST, self.tokens + (now - self._refilled) * DIAL_RATE)
        self._refilled = now
        outbound = [c for c in node.conns if c.outbound]
        missing = node.config.target_peers - len(outbound) - len(self.dialling)
        if missing <= 0:
            return
        self.tried = {a: t for a, t in self.tried.items() if now - t < self._retry_after(a)}
        busy = {group(peer_host(a)) for a in [*(c.dialled for c in outbound), *self.dialling]
                if scope_of(peer_host(a)) is Scope.GLOBAL}
        eligible = [
            e
            for e in node.book.book.entries()
            if e.addr not in self.kept
            and e.addr not in self.tried
            and e.addr not in self.dialling
            and now - e.last_try > self._retry_after(e.addr)
            and not self.connected_to(e.addr)
            and e.addr not in node.selves
            and not node.links.banned(e.addr)
            and node.book.may_dial(peer_host(e.addr))
            and group(peer_host(e.addr)) not in busy
            and (not e.shards or overlaps(node.config.shards, e.shards))
        ]
        while missing > 0 and self.tokens >= 1 and eligible:
            entry = node.book.book.select(eligible, self._rng)
            if entry is None:
                break
            addr = entry.addr
            g = group(peer_host(addr))
            eligible = [e for e in eligible if e is not entry
                        and (scope_of(peer_host(e.addr)) is not Scope.GLOBAL
                             or group(peer_host(e.addr)) != g)]
            self.tokens -= 1
            missing -= 1
            self.tried[addr] = now
            node.book.attempt(addr)
            self.dialling.add(addr)
            node.tasks.spawn(self._discovered(addr), name="dial a discovered peer")

    def _retry_after(self, addr: str) -> float:
        e = self.node.book.book.entry(addr)
        failures = e.attempts if e is not None else 0
        return float(self.node.config.backoff_max * 2 ** min(max(failures - 1, 0), 6))

    async def _discovered(self, addr: str) -> None:
        try:
            target = await self._in_scope(addr)
            if target is not None:
                await self.dial(addr, on_open=lambda: self.dialling.discard(addr),
                                at=target or None)
        finally:
            self.dialling.discard(addr)

    async def _in_scope(self, addr: str) -> str | None:
        """Where to dial a stranger's address: "" for as it is, an IP address for a DNS
        name whose every address may be dialled (the first of them), None for not at all."""
        host = peer_host(addr)
        if scope_of(host) is not Scope.NAME or self.node.config.connector is not None:
            return ""  # through Tor the exit resolves it, and reaches no private range
        try:
            ips = list(dict.fromkeys(ip.split("%")[0] for ip in await self.resolve(host)))
        except (OSError, UnicodeError):
            return None
        if not ips or not all(self.node.book.scope_allowed(ip_scope(ipaddress.ip_address(ip)))
                              for ip in ips):
            return None
        return ips[0]

    async def dial(self, addr: str, on_open: Callable[[], None] | None = None,
                   at: str | None = None) -> bool:
        """One connection attempt, run until the link closes; True if it ever opened.
        ``at``: the IP address to connect to for a DNS name already checked."""
        node = self.node
        session = node._session
        if (session is None or node.links.banned(addr) or self.connected_to(addr)
                or addr in node.selves):
            return False
        try:
            url, headers = f"http://{addr}/p2p", None
            if at is not None:
                port = addr.rsplit(":", 1)[1]
                url = f"http://{'[' + at + ']' if ':' in at else at}:{port}/p2p"
                headers = {"Host": addr}
            async with asyncio.timeout(DIAL_TIMEOUT):
                ws = await session.ws_connect(
                    url,
                    headers=headers,
                    max_msg_size=MAX_FRAME_SIZE,
                    heartbeat=30.0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            node.recent_errors.append(f"dial {addr}: {type(e).__name__}")
            return False
        if on_open is not None:
            on_open()
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
