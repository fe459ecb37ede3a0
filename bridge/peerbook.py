"""The peer book: the peers a person added, the node's links, and the node's
health as the faces show it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from bridge.core.envelope import Envelope
from bridge.core.errors import UserError
from bridge.core.peers import parse_peer
from bridge.events import NodeHealth, RecentErrors


class NodeLike(Protocol):
    """What the service needs of the P2P node (``bridge.net.node.Node``, or
    ``bridge.localnode.LocalNode`` when commands run without the daemon)."""

    async def publish(self, raw: bytes) -> Envelope: ...
    def subscribe(self, callback: Callable[[Envelope], None]) -> Callable[[], None]: ...
    def iter_stored(self) -> Iterable[Envelope]: ...
    def stored_with_tags(self, tags: Iterable[bytes]) -> Iterable[Envelope]: ...
    def peers(self) -> list[dict[str, object]]: ...
    def add_peer(self, host_port: str) -> None: ...
    def remove_peer(self, host_port: str) -> None: ...
    def is_self(self, host_port: str) -> bool: ...
    def health(self) -> dict[str, object]: ...


class PeerBook:
    def __init__(self, node: NodeLike, errors: RecentErrors) -> None:
        self.node = node
        self.errors = errors
        self.bootstrap: list[str] = []  # put into invitation links
        self._added: list[str] = []  # added here; listed as "connecting" until linked

    def add(self, host_port: str) -> None:
        peer = parse_peer(host_port)
        if self.node.is_self(peer):
            raise UserError(f"{peer} is this node itself, not a peer")
        self.node.add_peer(peer)
        if peer not in self._added:
            self._added.append(peer)

    def add_from_invite(self, peers: Iterable[str]) -> None:
        """An invitation's peers: this node's own address among them (the contact
        knew it as a peer) is skipped quietly, a bad one is noted."""
        for peer in peers:
            try:
                if not self.node.is_self(parse_peer(peer)):
                    self.add(peer)
            except UserError as exc:
                self.errors.add(f"peer {peer} from an invitation not added: {exc}")

    def remove(self, host_port: str) -> None:
        try:
            peer = parse_peer(host_port)
        except UserError:
            peer = host_port.strip()
        known = peer in self._added or any(p.get("address") == peer for p in self.node.peers())
        if not known:
            raise UserError(f"{peer[:80]} is not a peer of this node")
        self.node.remove_peer(peer)
        if peer in self._added:
            self._added.remove(peer)

    def listing(self) -> list[dict[str, object]]:
        """The node's links, then the peers added here that are not linked yet."""
        linked = self.node.peers()
        addresses = {p.get("address") for p in linked}
        waiting: list[dict[str, object]] = [
            {"address": a, "state": "connecting", "direction": "out"}
            for a in self._added if a not in addresses]
        return [*linked, *waiting]

    def health(self, *, difficulty_bits: int, storage: str, tor: str) -> NodeHealth:
        h = self.node.health()
        stored, size = h.get("stored_envelopes", 0), h.get("stored_bytes", 0)
        node_errors = h.get("recent_errors", [])
        errors = [*self.errors.lines(),
                  *(str(e) for e in (node_errors if isinstance(node_errors, list) else []))]
        return NodeHealth(peers=self.listing(),
                          stored_envelopes=stored if isinstance(stored, int) else 0,
                          stored_bytes=size if isinstance(size, int) else 0,
                          difficulty_bits=difficulty_bits, storage=storage, tor=tor,
                          recent_errors=errors[-20:])
