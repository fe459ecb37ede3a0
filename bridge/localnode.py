"""An in-process stand-in for the P2P node, with no network at all.

Used where a node is needed but no peer link may be opened: commands that edit
the key file while the daemon is stopped, and a daemon or demo started on a
system whose P2P node is unavailable. Envelopes get the same stateless checks
a node runs and reach every subscriber in this process; peers are only
remembered, never contacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from bridge.config import host_port
from bridge.core.checks import check_envelope
from bridge.core.envelope import Envelope


class LocalNode:
    def __init__(self, base_bits: int, *, max_envelopes: int = 100_000) -> None:
        self.base_bits = base_bits
        self.max_envelopes = max_envelopes
        self.port = 0
        self._store: dict[bytes, Envelope] = {}
        self._subscribers: list[Callable[[Envelope], None]] = []
        self._peers: list[str] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscribers.clear()

    async def publish(self, raw: bytes) -> Envelope:
        env = check_envelope(raw, now=int(time.time()), base_bits=self.base_bits)
        if env.id not in self._store:
            if len(self._store) >= self.max_envelopes:
                self._store.pop(next(iter(self._store)))
            self._store[env.id] = env
            for callback in list(self._subscribers):
                callback(env)
        return env

    def subscribe(self, callback: Callable[[Envelope], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
        return unsubscribe

    def iter_stored(self) -> Iterable[Envelope]:
        return list(self._store.values())

    def stored_with_tags(self, tags: Iterable[bytes]) -> Iterable[Envelope]:
        wanted = set(tags)
        return [env for env in self._store.values() if env.tag in wanted]

    def peers(self) -> list[dict[str, object]]:
        return [{"address": p, "state": "not connected (no P2P node)"} for p in self._peers]

    def is_self(self, host_port: str) -> bool:
        return False  # no listening socket: no address reaches this node

    def add_peer(self, hp: str) -> None:
        hp = host_port("peer", hp)
        if hp not in self._peers:
            self._peers.append(hp)

    def remove_peer(self, hp: str) -> None:
        if hp in self._peers:
            self._peers.remove(hp)

    def health(self) -> dict[str, object]:
        return {"stored_envelopes": len(self._store),
                "stored_bytes": sum(e.size for e in self._store.values()),
                "recent_errors": []}
