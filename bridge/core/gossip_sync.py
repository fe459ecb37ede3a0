"""Range reconciliation on a gossip link, per shard prefix (docs/gossip.md,
"Anti-entropy"; docs/sharding.md, "Reconciliation per shard").

A mixin of ``gossip.Link``, which holds the state: ``_session``, the reconciliation we
started (one per link at a time) over ``_session_prefix``, since ``_session_at``;
``_abandoned``, how many of ours the peer let stall. Each RECONCILE names the prefix it
covers: we answer only a prefix we carry (``reach``), a reply only for the session we
started and its prefix; a version-1 peer's reconciliation is not answered (the link
drops it before parsing). A light peer's finished session goes to ``gossip_light``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.core.errors import LocalProtocolError, RemoteProtocolError
from bridge.core.gossip_events import Event, Outgoing, ReconcileDone, ShardError
from bridge.core.gossip_wire import Hello, Message, Reconcile
from bridge.core.reconcile import PrefixView, RangeSource, Reconciler
from bridge.core.shards import Prefix, within


class RangeSync:
    source: RangeSource | None
    peer: Hello | None
    _session: Reconciler | None
    _session_prefix: Prefix | None
    _session_at: float | None
    _abandoned: int

    if TYPE_CHECKING:  # the link's and the other mixins' (declared, not shadowed)
        @property
        def active(self) -> bool: ...

        def overlaps(self) -> list[Prefix]: ...

        def reach(self) -> tuple[Prefix, ...]: ...

        def _out(self, msg: Message) -> bytes: ...

        def _light_done(self, done: ReconcileDone, now: float | None) -> list[Event]: ...

    @property
    def reconciling(self) -> bool:
        return self._session is not None

    @property
    def reconcile_ignored(self) -> bool:
        """The peer let one of our reconciliations stall: we do not ask it again."""
        return self._abandoned > 0

    def abandon_stalled(self, now: float, timeout: float) -> bool:
        """Give up our reconciliation if it has waited ``timeout`` for a reply (a peer
        that ignores it would otherwise keep this link marked busy for good); its late
        replies are then dropped. True if one was given up."""
        if self._session is None or self._session_at is None or now - self._session_at < timeout:
            return False
        self._session = None
        self._abandoned += 1
        return True

    def start_reconcile(self, now: float | None = None, prefix: Prefix | None = None) -> bytes:
        """The first frame of a reconciliation we start over ``prefix`` (by default the
        first prefix both ends carry; ``now``: for ``abandon_stalled``)."""
        if self.source is None or self._session is not None or not self.active:
            raise LocalProtocolError("cannot start a reconciliation now")
        if self.peer is None or self.peer.light:
            raise LocalProtocolError("light peers do not reconcile")
        common = self.overlaps()
        if prefix is None:
            if not common:
                raise LocalProtocolError("no shard prefix both ends carry")
            prefix = common[0]
        if not any(c.contains(prefix) for c in common):
            raise LocalProtocolError(f"prefix {prefix} is not carried by both ends")
        return self._begin(prefix, now)

    def _begin(self, prefix: Prefix, now: float | None) -> bytes:
        self._session = Reconciler(self._view(prefix), initiator=True)
        self._session_prefix = prefix
        self._session_at = now
        return self._out(Reconcile(self._session.initiate(), reply=False, prefix=prefix))

    def _view(self, prefix: Prefix) -> RangeSource:
        assert self.source is not None
        return self.source if prefix.depth == 0 else PrefixView(self.source, prefix.start,
                                                                  prefix.end)

    def _reconcile(self, msg: Reconcile, now: float) -> list[Event]:
        if not msg.reply:
            if self.source is None:
                raise RemoteProtocolError("reconciliation asked of a node without a store")
            if not within(self.reach(), msg.prefix):  # it knows ours from our HELLO
                raise ShardError(f"reconciliation of {msg.prefix}, a prefix we do not carry")
            reply = Reconciler(self._view(msg.prefix), initiator=False).receive(msg.payload)
            assert reply is not None  # a responder always answers
            return [Outgoing(self._out(Reconcile(reply, reply=True, prefix=msg.prefix)))]
        session = self._session
        if session is None:
            if self._abandoned:
                return []  # the late reply of a reconciliation we gave up
            raise RemoteProtocolError("reconcile reply without a session")
        prefix = self._session_prefix
        assert prefix is not None
        if msg.prefix != prefix:
            raise RemoteProtocolError(f"reconcile reply for {msg.prefix}, not {prefix}")
        nxt = session.receive(msg.payload)
        if nxt is not None:
            return [Outgoing(self._out(Reconcile(nxt, reply=False, prefix=prefix)))]
        self._session = None
        done = ReconcileDone(tuple(session.have), tuple(session.need), prefix)
        if self.peer is not None and self.peer.light:
            return self._light_done(done, now)  # ``gossip_light``
        return [done]
