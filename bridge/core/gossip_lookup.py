"""Which nodes carry a prefix, asked of a peer: FIND_SHARD and its answer, SHARD_PEERS
(docs/sharding.md, item 5; the frames in ``gossip_wire``).

A mixin of ``gossip.Link``, which holds the state: ``finding``, the prefixes asked of the
peer and when, at most ``Budgets.max_finds`` (the oldest forgotten). An answer is taken
only to a question of ours, once, within ``Budgets.want_ttl``; anything else is a protocol
violation (``UnrequestedError``). A question is charged to the link's FIND_SHARD
allowance before it is parsed (``Link.receive``), like PEERS.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from bridge.core.errors import LocalProtocolError
from bridge.core.gossip_events import (
    Budgets,
    Event,
    ShardAsked,
    ShardPeersHeard,
    UnrequestedError,
)
from bridge.core.gossip_wire import MAX_PEERS, FindShard, Hello, Message, ShardPeers
from bridge.core.shards import Prefix, overlap


class Lookup:
    peer: Hello | None
    budgets: Budgets
    finding: OrderedDict[Prefix, float]  # our FIND_SHARDs -> when

    def _out(self, msg: Message) -> bytes:
        raise NotImplementedError  # the link's

    def find_shard(self, prefix: Prefix, now: float) -> bytes:
        """FIND_SHARD to a version-2 peer; its answer is expected for ``want_ttl`` seconds,
        at most ``max_finds`` at once (the oldest is forgotten)."""
        if self.peer is None or self.peer.version < 2:
            raise LocalProtocolError("only a version-2 peer is asked for carriers")
        self.finding.pop(prefix, None)
        self.finding[prefix] = now
        while len(self.finding) > self.budgets.max_finds:
            self.finding.popitem(last=False)
        return self._out(FindShard(prefix))

    def shard_peers(self, prefix: Prefix, addrs: Iterable[str],
                    carried: Iterable[tuple[Prefix, ...]]) -> bytes:
        """The answer to ``ShardAsked``: the addresses whose prefixes overlap ``prefix``."""
        found = [(a, c) for a, c in zip(addrs, carried, strict=True)
                 if any(overlap(p, prefix) for p in c)][:MAX_PEERS]
        return self._out(ShardPeers(prefix, tuple(a for a, _ in found),
                                    tuple(c for _, c in found)))

    def _lookup(self, msg: FindShard | ShardPeers, now: float) -> list[Event]:
        if isinstance(msg, FindShard):
            return [ShardAsked(msg.prefix)]
        since = self.finding.pop(msg.prefix, None)
        if since is None or now - since > self.budgets.want_ttl:
            raise UnrequestedError("carriers of a prefix that was never asked for")
        return [ShardPeersHeard(msg.prefix, msg.addrs, msg.carried)]
