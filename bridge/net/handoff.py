"""Hand-off: this node's own envelopes reach the carriers of a shard it does not carry
(docs/sharding.md, "Sending to another shard (hand-off)").

The sender's side. An envelope published here (``Node.publish``) whose shard lies
outside this node's prefixes (a light node: that none of its full peers carries) is
queued by shard; what is queued in one turn of the
event loop goes together (at most ``Budgets.handoff_ids`` on one link, so a burst shares
its links). It is handed over on hand-off links (``bridge.net.handoff_link``) to
``copies`` carriers, one per network group (/16) first and those reached before (the
address book's tried table) first. Every ``check_after`` seconds after that it is
offered to one more carrier: the ids that carrier asks for had not spread, so it gets
them (a hand-over again) and they are checked again, up to ``rounds`` rounds in all;
ids it does not ask for are there. Carriers come from the address book (``carriers`` of
the shard), else from asking up to three peers (FIND_SHARD) and waiting up to
``lookup_timeout`` for an answer; when no carrier is left that was not tried, those
tried before are asked again; a round that reaches none is tried again at the next.
The store keeps the envelopes (a node keeps its own whatever their shard), so after a
restart every own envelope outside the node's prefixes still alive is handed off again
from the first round (``resume``: a carrier that has it asks for nothing, which costs a
HAVE).

The carrier's side (``admit``): a hand-off link is refused (BYE NORMAL) past
``per_host`` of them at once from one IP address or ``links`` in all; it is closed
after ``lifetime`` seconds, or once it brought ``Budgets.handoff_ids`` bodies.
Bounds on the sender: at most ``max_pending`` envelopes wait (the rest are reported
and left to the ordinary links), ``parallel`` hand-off links at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.core.addrbook import group
from bridge.core.gossip_wire import ByeReason
from bridge.core.peers import peer_host
from bridge.core.reconcile import make_key
from bridge.core.shards import KEY_BITS, Prefix, holds, shard_of_tag
from bridge.net.handoff_link import offer
from bridge.net.peerlink import PeerConnection
from bridge.store.index import key_id

if TYPE_CHECKING:
    from bridge.core.envelope import Envelope
    from bridge.net.node import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HandoffSettings:
    copies: int = 2  # carriers an envelope is first handed to
    check_after: float = 15.0  # s between a hand-over and the check with another carrier
    rounds: int = 6  # hand-over, then up to rounds - 1 checks
    answer_timeout: float = 5.0  # s an offer waits for the carrier's WANTs
    lookup_timeout: float = 5.0  # s to wait for FIND_SHARD answers
    max_pending: int = 4096  # own envelopes waiting for a hand-off or its check
    parallel: int = 4  # hand-off links this node opens at once
    # the carrier's side
    per_host: int = 4  # hand-off links at once from one IP address
    links: int = 32  # hand-off links at once in all
    lifetime: float = 30.0  # s a hand-off link may stay open


class Handoffs:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings = node.config.handoff
        self.queued: dict[int, dict[bytes, None]] = {}  # shard -> ids for a first hand-over
        self.pending: set[bytes] = set()  # ids queued, being handed over or checked
        self.stats = {"handed": 0, "checked": 0, "again": 0, "unreached": 0, "settled": 0}
        self._slots = asyncio.Semaphore(self.settings.parallel)
        self._rng = random.Random()

    # --- the sender ---------------------------------------------------------------

    def needs(self, shard: int) -> bool:
        node = self.node
        if node.config.light:  # its full peers take what they carry (``Relay.stored``)
            return not any(c.link.peer is not None and not c.link.peer.light
                           and c.link.peer_carries(shard) for c in node.active_conns())
        return not holds(node.config.shards, shard)

    def sent(self, env: Envelope) -> None:
        """``env`` was published here: hand it off if its shard is not carried here."""
        shard = shard_of_tag(env.tag)
        if self.needs(shard):
            self._queue(shard, env.id)

    def resume(self) -> None:
        """After a start: hand off again the own envelopes the store keeps outside our
        prefixes (a relay stores none of others' there)."""
        if self.node.config.light:
            return  # its prefixes mean nothing: it hands its own to its full peers
        for shard, eid in self._outside():
            self._queue(shard, eid)

    def _outside(self) -> Iterator[tuple[int, bytes]]:
        index, edge = self.node.store.index, 0
        gaps = []
        for p in sorted(self.node.config.shards, key=lambda p: p.start):
            gaps.append((edge, p.start))
            edge = p.end
        gaps.append((edge, 1 << KEY_BITS))
        for lo, hi in gaps:
            if lo >= hi:
                continue
            i = index.lower_bound(make_key(lo, 0, bytes(32)))
            while i < len(index):
                key = index.key_at(i)
                shard = int.from_bytes(key[:2], "big")
                if shard >= hi:
                    break
                yield shard, key_id(key)
                i += 1

    def _queue(self, shard: int, eid: bytes) -> None:
        if eid in self.pending:
            return
        if len(self.pending) >= self.settings.max_pending:
            self.node.recent_errors.append("hand-off queue full: an envelope waits for a carrier "
                                           "among this node's links")
            return
        self.pending.add(eid)
        queue = self.queued.setdefault(shard, {})
        queue[eid] = None
        if len(queue) == 1 and self.node.started:  # what comes in this loop turn goes along
            asyncio.get_running_loop().call_soon(self._flush, shard)

    def _flush(self, shard: int) -> None:
        """Hand over what is queued for ``shard``, a link's worth in each task."""
        ids = list(self.queued.pop(shard, {}))
        size = self.node.link_budgets.handoff_ids
        for k in range(0, len(ids), size):
            self.node.tasks.spawn(self._deliver(shard, ids[k : k + size]), name="hand-off")

    async def _deliver(self, shard: int, batch: list[bytes]) -> None:
        """The first hand-over, then the checks."""
        tried: set[str] = set()
        placed = False
        try:
            placed = (await self._round(shard, batch, self.settings.copies, tried))[0]
            if placed:
                self._count("handed")
        except Exception:  # not when cancelled (the node stops): then nothing follows
            log.exception("a hand-off failed; the checks hand it over again")
        self.node.tasks.spawn(self._checks(shard, batch, tried, placed), name="hand-off check")

    async def _checks(self, shard: int, batch: list[bytes], tried: set[str],
                      placed: bool) -> None:
        """Every ``check_after`` seconds: hand over again if no carrier was reached yet,
        else offer to one more carrier and go on with the ids it asked for."""
        s, ids = self.settings, batch
        try:
            for _ in range(s.rounds - 1):
                await asyncio.sleep(s.check_after)  # the protocol's pause, not a test's wait
                ids = [i for i in ids if i in self.node.store]  # expired meanwhile: done
                if not ids:
                    return
                reached, wanted = await self._round(shard, ids, 1 if placed else s.copies, tried)
                if not reached:
                    continue
                if placed:
                    self._count("checked")
                    ids = [i for i in ids if i in wanted]  # not spread: it has them now
                    self._count("again" if ids else "settled")
                    if not ids:
                        return
                else:
                    self._count("handed")
                placed = True
            self.node.recent_errors.append(
                f"hand-off: {len(ids)} envelope(s) not known to have spread after {s.rounds} "
                "rounds")
        finally:
            self.pending.difference_update(batch)
            self.node.notify_change()

    async def _round(self, shard: int, ids: list[bytes], copies: int,
                     tried: set[str]) -> tuple[bool, set[bytes]]:
        """Offer ``ids`` to ``copies`` carriers, those not tried before first: whether
        any was reached, and the ids they asked for (and were sent)."""
        store = self.node.store
        items = {i: raw for i in ids if (raw := store.get(i)) is not None}
        if not items:
            return True, set()  # expired meanwhile: nothing left to spread
        reached, wanted = 0, set()
        # fresh carriers (looked up once if none is known), else those tried before
        todo = await self._carriers(shard, tried) or [a for a in self._known(shard, set())
                                                      if a in tried]
        while reached < copies and todo:
            picks, todo = todo[: copies - reached], todo[copies - reached :]
            tried.update(picks)
            for got in await asyncio.gather(*(self._offer(a, shard, items) for a in picks)):
                if got is not None:
                    reached += 1
                    wanted |= got
        if reached == 0:
            self._count("unreached")
            self.node.recent_errors.append(
                f"hand-off: no carrier of shard {shard:#06x} reached; tried again later")
        return reached > 0, wanted

    def _count(self, what: str) -> None:
        self.stats[what] += 1
        self.node.notify_change()  # for whoever waits on the figures

    async def _offer(self, addr: str, shard: int, items: dict[bytes, bytes]) -> set[bytes] | None:
        async with self._slots:
            got = await offer(self.node, addr, shard, items,
                              answer_timeout=self.settings.answer_timeout)
        log.debug("hand-off to %s: %s", addr, "not reached" if got is None else f"{len(got)} taken")
        return got

    async def _carriers(self, shard: int, tried: set[str]) -> list[str]:
        """The carriers of ``shard`` not in ``tried``, in the order to try them: one per
        network group first, those reached before first; asked of peers if the book knows
        none."""
        found = self._known(shard, tried)
        if not found:
            node = self.node
            leaf = Prefix(shard, KEY_BITS)
            if node.find_carriers(leaf):
                with contextlib.suppress(TimeoutError):
                    await node.wait_for(lambda: bool(self._known(shard, tried)),
                                        self.settings.lookup_timeout)
            found = self._known(shard, tried)
        book = self.node.book.book
        self._rng.shuffle(found)
        found.sort(key=lambda a: (e := book.entry(a)) is None or e.last_good is None)
        picks: list[str] = []
        groups: set[str] = set()
        for a in found:  # one per group first, then the rest
            if group(peer_host(a)) not in groups:
                groups.add(group(peer_host(a)))
                picks.append(a)
        return picks + [a for a in found if a not in picks]

    def _known(self, shard: int, tried: set[str]) -> list[str]:
        node = self.node
        return [a for a in node.book.book.carriers(Prefix(shard, KEY_BITS))
                if a not in tried and a not in node.selves and not node.links.banned(a)]

    # --- the carrier ----------------------------------------------------------------

    def admit(self, conn: PeerConnection) -> bool:
        """A hand-off link arrived: within the caps, closed after ``lifetime`` seconds."""
        s, links = self.settings, self.node.links
        mine = [c for c in self.node.conns if c.link.active and c.link.peer is not None
                and c.link.peer.handoff and c is not conn]
        if len(mine) >= s.links or sum(c.remote == conn.remote for c in mine) >= s.per_host:
            links.refuse(conn, ByeReason.NORMAL, "no room for another hand-off link")
            return False
        loop = asyncio.get_running_loop()
        loop.call_later(s.lifetime, links.refuse, conn, ByeReason.NORMAL, "hand-off link expired")
        self.node.notify_change()
        return True

    def taken(self, conn: PeerConnection) -> None:
        """After a body arrived on ``conn``: close a hand-off link that is spent."""
        if conn.link.handoff_spent:
            self.node.links.refuse(conn, ByeReason.NORMAL, "hand-off complete")
