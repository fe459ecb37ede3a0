"""A one-process stand-in for the P2P node, for service tests that are not about
the network: every envelope published by any service reaches all subscribers
after the same checks a node runs. Network behaviour is tested with real nodes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from bridge.core.checks import check_envelope
from bridge.core.envelope import Envelope


class SharedNode:
    def __init__(self, base_bits: int, clock: Callable[[], int] | None = None) -> None:
        self.base_bits = base_bits
        self.clock = clock or (lambda: int(time.time()))
        self.store: dict[bytes, Envelope] = {}
        self.subscribers: list[Callable[[Envelope], None]] = []
        self.peer_list: list[str] = []
        self.own_addresses: set[str] = set()  # what is_self() answers True for

    async def publish(self, raw: bytes) -> Envelope:
        env = check_envelope(raw, now=self.clock(), base_bits=self.base_bits)
        if env.id not in self.store:
            self.store[env.id] = env
            for cb in list(self.subscribers):
                cb(env)
        return env

    def subscribe(self, callback: Callable[[Envelope], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def iter_stored(self) -> Iterable[Envelope]:
        return list(self.store.values())

    def stored_with_tags(self, tags: Iterable[bytes]) -> Iterable[Envelope]:
        wanted = set(tags)
        return [env for env in self.store.values() if env.tag in wanted]

    def peers(self) -> list[dict[str, object]]:
        return [{"address": p, "state": "configured"} for p in self.peer_list]

    def add_peer(self, host_port: str) -> None:
        self.peer_list.append(host_port)

    def remove_peer(self, host_port: str) -> None:
        self.peer_list.remove(host_port)

    def is_self(self, host_port: str) -> bool:
        return host_port in self.own_addresses

    def health(self) -> dict[str, object]:
        return {"stored_envelopes": len(self.store),
                "stored_bytes": sum(e.size for e in self.store.values())}
