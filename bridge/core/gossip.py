"""The per-peer-link gossip state machine, sans-IO (bytes in, events out).

Rules, as the transition table below encodes them:
  * each side sends HELLO first; nothing else may come before the peer's HELLO;
  * a HELLO with an unknown version, or a clock beyond the skew bound, is
    refused with BYE (reason VERSION / CLOCK);
  * after both HELLOs the link is ACTIVE: HAVE announces ids, WANT asks for
    bodies, ENVELOPE carries a body *only in answer to a WANT* — an unrequested
    body is a protocol violation — so no body crosses a link twice;
  * the link remembers which ids the peer has (it announced them, or we sent
    them), and never announces those back;
  * shards (docs/sharding.md): a HELLO (version 2) names the prefixes its sender
    carries; a body outside ours is a violation (``ShardError``), one outside the
    peer's is never sent, and a reconciliation covers one prefix both ends carry;
  * a light node asks a full peer for shard prefixes, never tags (``gossip_light``);
  * BYE, sent or received, closes the link for good.

Time is passed in (``now``); the link owns no socket, task or clock. Budgets are
token buckets: bytes and frames received (exceeding either is a flood: ``FloodError``),
envelopes requested (the link never asks a peer for more than its budget), and
one allowance per kind of cheap frame (HAVE and WANT ids, WATCH_SHARD, PEERS and
reconciliation requests): what exceeds it is ignored, and a peer that keeps on
exceeding it is a flood. What the link remembers is bounded and ages: ids asked
of the peer (``max_wanted``, forgotten after ``want_ttl``), ids the peer asked
for (``max_peer_wants``), ids the peer has (``peer_has_ids``); a body goes to a
peer at most once per ``resend_after`` seconds however often it asks.

A frame that arrives after the link closed (the peer had not yet heard our BYE,
or its own BYE crossed ours) is ignored.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from bridge.core.budget import Allowance, TokenBucket
from bridge.core.checks import MAX_CLOCK_SKEW
from bridge.core.envelope import check_size, envelope_id
from bridge.core.errors import LocalProtocolError, RemoteProtocolError
from bridge.core.gossip_events import (
    PEER_HAS_MEMORY,
    Announced,
    BodyReceived,
    Budgets,
    Closed,
    Event,
    FloodError,
    HelloRefused,
    LocalInfo,
    Outgoing,
    PeerReady,
    PeersHeard,
    ReconcileDone,
    Requested,
    ShardAsked,
    ShardError,
    ShardPeersHeard,
    ShardWatched,
    UnrequestedError,
)
from bridge.core.gossip_handoff import HandoffLink
from bridge.core.gossip_light import LightShards
from bridge.core.gossip_lookup import Lookup
from bridge.core.gossip_sync import RangeSync
from bridge.core.gossip_wire import (
    ID_SIZE,
    MAX_IDS,
    MAX_PEERS,
    PROTOCOL_VERSION,
    VERSIONS,
    Bye,
    ByeReason,
    EnvelopeBody,
    FindShard,
    FrameType,
    Have,
    Hello,
    Message,
    Peers,
    Reconcile,
    ShardPeers,
    Want,
    WatchShard,
    encode,
    parse,
)
from bridge.core.reconcile import RangeSource, Reconciler
from bridge.core.shards import EVERYTHING, Prefix, holds, overlaps, shard_of_raw

# Re-exported: the budgets live in bridge.core.budget, the events in gossip_events.
__all__ = [
    "PEER_HAS_MEMORY", "Announced", "BodyReceived", "Budgets", "Closed", "Event", "FloodError",
    "HelloRefused", "LocalInfo", "Outgoing", "PeerReady", "PeersHeard", "ReconcileDone",
    "Requested", "ShardAsked", "ShardError", "ShardPeersHeard", "ShardWatched", "TokenBucket",
    "UnrequestedError",
]


class State(enum.Enum):
    IDLE = "idle"
    HELLO_SENT = "hello_sent"
    HELLO_RECEIVED = "hello_received"
    ACTIVE = "active"
    CLOSED = "closed"


class Step(enum.Enum):
    SEND_HELLO = "send_hello"
    RECV_HELLO = "recv_hello"
    SEND = "send"  # any other frame
    RECV = "recv"
    SEND_BYE = "send_bye"
    RECV_BYE = "recv_bye"


_ANY_STATE_BYE: Final = {Step.SEND_BYE: State.CLOSED, Step.RECV_BYE: State.CLOSED}
TRANSITIONS: Final[dict[State, dict[Step, State]]] = {
    State.IDLE: {Step.SEND_HELLO: State.HELLO_SENT, Step.RECV_HELLO: State.HELLO_RECEIVED}
    | _ANY_STATE_BYE,
    State.HELLO_SENT: {Step.RECV_HELLO: State.ACTIVE} | _ANY_STATE_BYE,
    State.HELLO_RECEIVED: {Step.SEND_HELLO: State.ACTIVE} | _ANY_STATE_BYE,
    State.ACTIVE: {Step.SEND: State.ACTIVE, Step.RECV: State.ACTIVE} | _ANY_STATE_BYE,
    State.CLOSED: {},
}


DEFAULT_BUDGETS: Final = Budgets()  # frozen: one shared instance is safe


class Link(RangeSync, LightShards, Lookup, HandoffLink):
    """Gossip with one peer: call ``hello()``, feed frames to ``receive()``."""

    def __init__(
        self,
        local: LocalInfo,
        now: float,
        *,
        source: RangeSource | None = None,
        budgets: Budgets = DEFAULT_BUDGETS,
    ) -> None:
        self.local = local
        self.source = source  # our sorted index (a light node's: the ids it fetched)
        self.state = State.IDLE
        self.peer: Hello | None = None
        self.budgets = b = budgets
        # Ordered so the oldest goes first in O(1) (a dict slows down as its front empties).
        self.peer_has: OrderedDict[bytes, None] = OrderedDict()  # bounded
        # ids the peer asked for, not yet sent, in the order asked: bodies go in that order
        # (a sender's messages arrive in the order they were announced)
        self.peer_wants: OrderedDict[bytes, None] = OrderedDict()
        self.wanted: OrderedDict[bytes, float] = OrderedDict()  # ids asked of the peer -> when
        self.sent: OrderedDict[bytes, float] = OrderedDict()  # bodies sent -> when
        self.watching: tuple[Prefix, ...] = ()  # light: the prefixes asked of this peer
        self.peer_watch: tuple[Prefix, ...] = ()  # a light peer's (``gossip_light``)
        self.light_queue: list[Prefix] = []
        self.finding: OrderedDict[Prefix, float] = OrderedDict()  # our FIND_SHARDs -> when
        self.throttled = 0  # items of cheap frames ignored for want of budget
        self._bytes = TokenBucket(b.bytes_rate, b.bytes_burst, now)
        self._frames = TokenBucket(b.frames_rate, b.frames_burst, now)
        self._envelopes = TokenBucket(b.envelopes_rate, b.envelopes_burst, now)
        # Keyed by frame type; reconciliation replies (to our own sessions) are not charged.
        self._allow: dict[int, Allowance] = {
            kind: Allowance(rate, burst, now, burst * b.drop_factor)
            for kind, rate, burst in (
                (FrameType.HAVE, b.have_rate, b.have_burst),
                (FrameType.WANT, b.want_rate, b.want_burst),
                (FrameType.WATCH_SHARD, b.watch_shard_rate, b.watch_shard_burst),
                (FrameType.PEERS, b.peers_rate, b.peers_burst),
                (FrameType.FIND_SHARD, b.find_rate, b.find_burst),
                (FrameType.RECONCILE, b.reconcile_rate, b.reconcile_burst),
            )
        }
        self._session: Reconciler | None = None
        self._session_prefix: Prefix | None = None
        self._session_at: float | None = None  # when ours started (the caller's clock)
        self._abandoned = 0  # ours given up for want of a reply
        self.bytes_in = 0
        self.bytes_out = 0

    # --- the transition table --------------------------------------------------

    def _step(self, step: Step) -> None:
        nxt = TRANSITIONS[self.state].get(step)
        if nxt is None:
            received = step in (Step.RECV, Step.RECV_HELLO, Step.RECV_BYE)
            err = RemoteProtocolError if received else LocalProtocolError
            raise err(f"{step.value} is not allowed in state {self.state.value}")
        self.state = nxt

    def _out(self, msg: Message, step: Step = Step.SEND) -> bytes:
        self._step(step)
        frame = encode(msg)
        self.bytes_out += len(frame)
        return frame

    @property
    def active(self) -> bool:
        return self.state is State.ACTIVE

    @property
    def peer_shards(self) -> tuple[Prefix, ...]:
        """What the peer carries: its HELLO's prefixes (a version-1 peer: everything); a
        light peer, the prefixes it watches (``gossip_light``)."""
        if self.peer is not None and self.peer.light:
            return self.peer_watch
        return self.peer.shards if self.peer is not None else EVERYTHING

    def peer_carries(self, shard: int) -> bool:
        return holds(self.peer_shards, shard)

    def carries(self, shard: int) -> bool:
        return holds(self.reach(), shard)

    def overlaps(self) -> list[Prefix]:
        """The prefixes both ends carry: what a reconciliation on this link may cover
        (none with a version-1 peer, whose reconciliation has no shard key)."""
        if self.local.light:
            return []  # a light node starts none
        if (self.peer is None or self.peer.version < 2 or self.peer.light or self.source is None
                or self.handoff):
            return []
        return overlaps(self.local.shards, self.peer.shards)

    # --- sending ---------------------------------------------------------------

    def hello(self, now: int) -> bytes:
        loc = self.local
        msg = Hello(PROTOCOL_VERSION, loc.min_bits, now, loc.node_id, loc.light, loc.listen,
                    loc.shards, loc.handoff)
        return self._out(msg, Step.SEND_HELLO)

    def bye(self, reason: ByeReason, text: str = "") -> bytes:
        return self._out(Bye(reason, text), Step.SEND_BYE)

    def announce(self, ids: Iterable[bytes]) -> list[bytes]:
        """HAVE frames for the ids the peer is not known to have (and remember them)."""
        fresh: list[bytes] = []
        if self.peer is not None and self.peer.handoff:
            return []  # nothing goes back on a hand-off link (``gossip_handoff``)
        for i in ids:  # an id queued twice (stored, then found by reconciliation) goes once
            if i not in self.peer_has:
                self._remember(i)
                fresh.append(i)
        return [
            self._out(Have(tuple(fresh[k : k + MAX_IDS]))) for k in range(0, len(fresh), MAX_IDS)
        ]

    def request(self, ids: Iterable[bytes], now: float) -> tuple[list[bytes], list[bytes]]:
        """WANT frames for as many ids as the envelope budget allows, and the ids left over."""
        asked: list[bytes] = []
        left: list[bytes] = []
        self.expire_wanted(now)
        wanted, cap = self.wanted, self.budgets.max_wanted
        for i in ids:
            if i in wanted:
                continue
            if len(wanted) < cap and self._envelopes.take(1, now):
                asked.append(i)
                wanted[i] = now
            else:
                left.append(i)
        frames = [
            self._out(Want(tuple(asked[k : k + MAX_IDS]))) for k in range(0, len(asked), MAX_IDS)
        ]
        return frames, left

    def can_request(self, now: float) -> int:
        """How many more ids ``request`` would ask for now (room and budget)."""
        room = self.budgets.max_wanted - len(self.wanted)
        return max(0, min(room, self._envelopes.available(now)))

    def expire_wanted(self, now: float) -> None:
        """Forget requests older than ``want_ttl`` (a body for one of them is then unrequested)."""
        wanted, limit = self.wanted, now - self.budgets.want_ttl
        while wanted:
            _, when = next(iter(wanted.items()))
            if when > limit:
                break
            wanted.popitem(last=False)

    def send_body(self, eid: bytes, raw: bytes, now: float) -> bytes | None:
        """The ENVELOPE frame if the peer asked for this body and carries its shard (it
        would refuse it otherwise); None otherwise."""
        if eid not in self.peer_wants:
            return None
        self.peer_wants.pop(eid, None)
        if not self.peer_carries(shard_of_raw(raw)):
            return None
        self._remember(eid)
        sent = self.sent
        sent[eid] = now
        sent.move_to_end(eid)
        if len(sent) > self.budgets.peer_has_ids:
            sent.popitem(last=False)
        return self._out(EnvelopeBody(raw))

    def _sent_recently(self, eid: bytes, now: float) -> bool:
        sent, limit = self.sent, now - self.budgets.resend_after
        while sent:  # age out the front first: the window slides
            _, when = next(iter(sent.items()))
            if when > limit:
                break
            sent.popitem(last=False)
        return eid in sent

    def peers(self, addrs: Iterable[str],
              carried: Iterable[tuple[Prefix, ...]] | None = None) -> bytes:
        """PEERS; ``carried``: what each address's node carries, as far as we know (``()``:
        not known), sent to a version-2 peer only: a version-1 peer reads plain lists."""
        out = tuple(addrs)[:MAX_PEERS]
        if carried is None or self.peer is None or self.peer.version < 2:
            return self._out(Peers(out))
        return self._out(Peers(out, tuple(carried)[:len(out)]))


    # --- receiving -------------------------------------------------------------

    def receive(self, frame: bytes, now: float, *, wall: int | None = None) -> list[Event]:
        """Parse one frame and apply it; raises ``RemoteProtocolError`` subclasses.

        ``now`` is the clock of the budgets (the one the link was made with); ``wall``
        the unix time a HELLO's clock is checked against (``now`` if not given).
        """
        self.bytes_in += len(frame)
        if self.state is State.CLOSED:
            return []  # sent before the peer heard our BYE, or its BYE crossing ours
        # Bodies are not charged: we asked for each (an unasked one is a violation, found
        # with one hash), within our envelope budget; a large catch-up is not a flood.
        body = bool(frame) and frame[0] == FrameType.ENVELOPE
        if not body and not self._bytes.take(len(frame), now):
            raise FloodError("peer exceeded its byte budget")
        if not self._frames.take(1, now):  # tiny frames: each costs more than its bytes say
            raise FloodError("peer exceeded its frame budget")
        allowance = self._allow.get(frame[0]) if frame and self.state is State.ACTIVE else None
        if allowance is not None:  # charged before parsing: a throttled frame costs no parse
            listing = frame[0] in (FrameType.HAVE, FrameType.WANT)
            cost = min(int.from_bytes(frame[1:3], "big"), MAX_IDS) if listing else 1
            allowed = allowance.spend(cost, now)
            if allowance.flooded:
                raise FloodError(f"peer keeps exceeding its {FrameType(frame[0]).name} budget")
            self.throttled += cost - allowed
            if allowed == 0:
                return []
            if listing and allowed < cost and len(frame) == 3 + cost * ID_SIZE:
                frame = frame[:1] + allowed.to_bytes(2, "big") + frame[3 : 3 + allowed * ID_SIZE]
        if (self.peer is not None and self.peer.version < 2 and frame
                and frame[0] in (FrameType.RECONCILE, FrameType.RECONCILE_REPLY)):
            self._step(Step.RECV)
            return []  # a version-1 peer's reconciliation has no shard key: not answered
        msg = parse(frame)
        if isinstance(msg, Hello):
            self._step(Step.RECV_HELLO)
            self._check_hello(msg, int(now) if wall is None else wall)
            self.peer = msg
            return [PeerReady(msg)]
        if isinstance(msg, Bye):
            self._step(Step.RECV_BYE)
            return [Closed(msg.reason, msg.text)]
        self._step(Step.RECV)
        if self.handoff:
            self._handoff_frame(msg)  # what a hand-off link may carry (``gossip_handoff``)
        if isinstance(msg, Have):
            for i in msg.ids:
                self._remember(i)
            return [Announced(msg.ids)]
        if isinstance(msg, Want):
            wants, cap = self.peer_wants, self.budgets.max_peer_wants
            asked = []
            for i in msg.ids:
                if len(wants) >= cap:
                    break
                if i not in wants and not self._sent_recently(i, now):
                    wants[i] = None
                    asked.append(i)
            return [Requested(tuple(asked))] if asked else []
        if isinstance(msg, EnvelopeBody):
            check_size(msg.raw)  # cheapest first: a wrong length is not worth a hash
            inside = self.carries(shard_of_raw(msg.raw))  # two bytes: before the hash
            legacy = self.peer is not None and self.peer.version < 2
            if not inside and not legacy:
                raise ShardError("envelope body outside the shards this node carries")
            eid = envelope_id(msg.raw)
            if eid not in self.wanted:
                raise UnrequestedError("envelope body that was never requested")
            del self.wanted[eid]
            self._remember(eid)
            # a version-1 peer knows no shards and offers everything: dropped, not blamed
            return [BodyReceived(eid, msg.raw)] if inside else []
        if isinstance(msg, Reconcile):
            return self._reconcile(msg, now)
        if isinstance(msg, Peers):
            return [PeersHeard(msg.addrs, msg.carried)]
        if isinstance(msg, FindShard | ShardPeers):
            return self._lookup(msg, now)  # ``gossip_lookup``
        assert isinstance(msg, WatchShard)
        return self._on_watch_shard(msg, now)  # ``gossip_light``

    def _check_hello(self, msg: Hello, now: int) -> None:
        if msg.version not in VERSIONS:
            raise HelloRefused(ByeReason.VERSION, f"protocol version {msg.version} is unknown")
        self._check_handoff_hello(msg)
        if abs(msg.clock - now) > MAX_CLOCK_SKEW:
            raise HelloRefused(
                ByeReason.CLOCK, f"clocks differ by {msg.clock - now} s (limit {MAX_CLOCK_SKEW})"
            )
        if msg.node_id == self.local.node_id:
            raise HelloRefused(ByeReason.SELF, "connected to itself")

    def forget(self) -> None:
        """Drop what the link remembers of the peer (it has closed; the ids go at once)."""
        self.peer_has.clear()
        self.peer_wants.clear()
        self.wanted.clear()
        self.sent.clear()

    def _remember(self, eid: bytes) -> None:
        has = self.peer_has
        has[eid] = None
        if len(has) > self.budgets.peer_has_ids:
            has.popitem(last=False)
