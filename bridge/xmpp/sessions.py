"""Bound client sessions of the embedded server, by account and resource.

Several clients (resources) may be connected to one account at once; the
gateway delivers what the network sends an identity to every available one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.xmpp.stream import C2SConnection


class Sessions:
    def __init__(self) -> None:
        self._by_owner: dict[str, dict[str, C2SConnection]] = {}

    def add(self, conn: C2SConnection) -> C2SConnection | None:
        """Register a bound connection; returns the one it replaces (same resource)."""
        assert conn.owner is not None
        resources = self._by_owner.setdefault(conn.owner.address, {})
        old = resources.get(conn.jid.resource)
        resources[conn.jid.resource] = conn
        return old if old is not conn else None

    def remove(self, conn: C2SConnection) -> bool:
        if conn.owner is None:
            return False
        resources = self._by_owner.get(conn.owner.address, {})
        if resources.get(conn.jid.resource) is not conn:
            return False
        del resources[conn.jid.resource]
        if not resources:
            self._by_owner.pop(conn.owner.address, None)
        return True

    def of(self, owner: str) -> list[C2SConnection]:
        return list(self._by_owner.get(owner, {}).values())

    def available(self, owner: str) -> list[C2SConnection]:
        return [c for c in self.of(owner) if c.available]

    def resource(self, owner: str, resource: str) -> C2SConnection | None:
        return self._by_owner.get(owner, {}).get(resource)

    def all(self) -> list[C2SConnection]:
        return [c for resources in self._by_owner.values() for c in resources.values()]
