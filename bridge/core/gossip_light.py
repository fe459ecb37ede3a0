"""Light nodes by shard: WATCH_SHARD and the reconciliation that answers it
(docs/sharding.md, "Light nodes"; the frame in ``gossip_wire``).

A light node (HELLO flag bit 0) stores nothing for others and never names a tag. It
asks a full peer for a shard **prefix** (``watch_shard``): every envelope under it.
The full peer answers with a range reconciliation it starts itself, between its store
under the prefix and the light node's id set under it (the light node keeps the id of
every envelope of its prefixes it has fetched, kept or not, so the answer does not
tell which ones it kept); it then announces what the light node lacks, and from then
on every new envelope under the prefix. The light node fetches every body under the
prefix (the shell keeps only those whose tags it watches).

A mixin of ``gossip.Link``, which holds the state:

* light side: ``watching``, the prefixes asked of this peer (each inside one the peer
  carries); bodies and reconciliations outside them are violations;
* full side: ``peer_watch``, the prefixes the light peer asked (at most
  ``MAX_PREFIXES``, each inside one we carry); ``light_queue``, those waiting for a
  reconciliation (one session per link at a time).

A light peer that let one of our sessions stall (``Link.abandon_stalled``) is not
reconciled with again on that link, as a full peer is not: a late reply of the old
session could not be told from one of a new session. New envelopes still go to it.

Budgets: a WATCH_SHARD is charged to its allowance before it is parsed
(``Budgets.watch_shard_rate``: each of 16 prefixes twice a minute, where an honest light
node asks once in 45 to 75 s); one that arrives
while its prefix waits already costs nothing more; the reconciliation is bounded by
``reconcile.MAX_ROUNDS`` like any other. What the light peer holds that we lack is not
asked for: it would answer only for the envelopes it kept, and so tell which they are.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.core.errors import LocalProtocolError, RemoteProtocolError
from bridge.core.gossip_events import (
    Event,
    LocalInfo,
    Outgoing,
    ReconcileDone,
    ShardError,
    ShardWatched,
)
from bridge.core.gossip_wire import Hello, Message, WatchShard
from bridge.core.reconcile import RangeSource
from bridge.core.shards import KEY_BITS, MAX_PREFIXES, Prefix, of_key, within


def light_prefixes(keys: Iterable[int], carried: tuple[Prefix, ...],
                   depth: int = 0) -> list[Prefix]:
    """What a light node asks of a peer that carries ``carried`` for its shard keys
    ``keys``: for each key the peer carries, the prefix of the key at the peer's own
    depth for it, or at ``depth`` if deeper (a longer prefix: less to fetch, a smaller
    anonymity set). Keys the peer does not carry are not asked of it."""
    out: set[Prefix] = set()
    for key in keys:
        held = [p for p in carried if p.holds(key)]
        if held:
            out.add(of_key(key, min(KEY_BITS, max(depth, held[0].depth))))
    found = sorted(out, key=lambda p: (p.start, p.depth))
    kept = [p for p in found if not any(q != p and q.contains(p) for q in found)]
    return kept[:MAX_PREFIXES]


class LightShards:
    local: LocalInfo
    peer: Hello | None
    source: RangeSource | None
    watching: tuple[Prefix, ...]  # light side: the prefixes asked of this peer
    peer_watch: tuple[Prefix, ...]  # full side: the prefixes the light peer asked
    light_queue: list[Prefix]  # full side: waiting for a reconciliation
    peer_has: dict[bytes, None]

    @property
    def active(self) -> bool:
        raise NotImplementedError  # the link's

    @property
    def reconciling(self) -> bool:
        raise NotImplementedError  # the link's

    @property
    def reconcile_ignored(self) -> bool:
        raise NotImplementedError  # the link's

    def _out(self, msg: Message) -> bytes:
        raise NotImplementedError  # the link's

    def _begin(self, prefix: Prefix, now: float | None) -> bytes:
        raise NotImplementedError  # the link's: start a session we initiate

    def reach(self) -> tuple[Prefix, ...]:
        """The prefixes we take bodies and answer reconciliations under: what we carry,
        or, a light node, what we asked this peer for."""
        return self.watching if self.local.light else self.local.shards

    def watch_shard(self, prefix: Prefix) -> bytes:
        """WATCH_SHARD (light side): ask this full peer for every envelope under
        ``prefix``, which must lie inside a prefix it carries."""
        peer = self.peer
        if not self.local.light or peer is None or peer.light or not self.active:
            raise LocalProtocolError("only a light node asks a full peer for a shard")
        if peer.version < 2 or not within(peer.shards, prefix):
            raise LocalProtocolError(f"the peer does not carry {prefix}")
        if prefix not in self.watching:
            if len(self.watching) >= MAX_PREFIXES:
                raise LocalProtocolError(f"at most {MAX_PREFIXES} prefixes a link")
            self.watching = (*self.watching, prefix)
        return self._out(WatchShard(prefix))

    def _on_watch_shard(self, msg: WatchShard, now: float) -> list[Event]:
        """A light peer asks for ``msg.prefix`` (full side)."""
        peer, p = self.peer, msg.prefix
        if self.local.light or peer is None or not peer.light:
            raise RemoteProtocolError("WATCH_SHARD is from a light node to a full node")
        if not within(self.local.shards, p):  # it had our HELLO: it knew
            raise ShardError(f"WATCH_SHARD of {p}, a prefix we do not carry")
        if p not in self.peer_watch:
            if len(self.peer_watch) >= MAX_PREFIXES:
                raise RemoteProtocolError(f"more than {MAX_PREFIXES} prefixes watched")
            self.peer_watch = (*self.peer_watch, p)
        events: list[Event] = [ShardWatched(p)]
        if self.source is None or p in self.light_queue or self.reconcile_ignored:
            return events  # one it let stall: its late replies could not be told apart
        if self.reconciling:
            self.light_queue.append(p)
        else:
            events.append(Outgoing(self._begin(p, now)))
        return events

    def _light_done(self, done: ReconcileDone, now: float | None) -> list[Event]:
        """A reconciliation with a light peer has finished (full side): what it lacks is
        announced again even if announced before (it may not have fetched it), what it
        holds that we lack is not asked for; the next prefix waiting starts."""
        for i in done.have:
            self.peer_has.pop(i, None)
        events: list[Event] = [ReconcileDone(done.have, (), done.prefix)]
        if self.light_queue and self.active:
            events.append(Outgoing(self._begin(self.light_queue.pop(0), now)))
        return events

