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
  * BYE, sent or received, closes the link for good.

Time is passed in (``now``); the link owns no socket, task or clock. Budgets are
token buckets: bytes received (exceeding it is a flood: ``FloodError``) and
envelopes requested (the link never asks a peer for more than its budget).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bridge.core.checks import MAX_CLOCK_SKEW
from bridge.core.envelope import check_size, envelope_id
from bridge.core.errors import LocalProtocolError, RemoteProtocolError
from bridge.core.gossip_wire import (
    MAX_IDS,
    MAX_PEERS,
    MAX_TAGS,
    PROTOCOL_VERSION,
    Bye,
    ByeReason,
    EnvelopeBody,
    Have,
    Hello,
    Message,
    Peers,
    Reconcile,
    Want,
    Watch,
    encode,
    parse,
)
from bridge.core.reconcile import RangeSource, Reconciler

PEER_HAS_MEMORY: Final = 50_000  # ids remembered per link (oldest forgotten first)


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


class HelloRefused(RemoteProtocolError):
    """The peer's hello cannot be accepted; ``reason`` goes into our BYE."""

    def __init__(self, reason: ByeReason, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class FloodError(RemoteProtocolError):
    """The peer sent more than its byte budget allows."""


class UnrequestedError(RemoteProtocolError):
    """The peer sent an envelope body we never asked it for."""


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; time is passed in."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def available(self, now: float) -> int:
        self._refill(now)
        return int(self.tokens)

    def take(self, n: float, now: float) -> bool:
        """Spend ``n`` tokens if there are that many; False (nothing spent) if not."""
        self._refill(now)
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


@dataclass(frozen=True, slots=True)
class LocalInfo:
    node_id: bytes
    min_bits: int
    light: bool = False
    listen: str = ""


@dataclass(frozen=True, slots=True)
class Budgets:
    bytes_rate: float = 4 * 1024 * 1024  # per second
    bytes_burst: float = 16 * 1024 * 1024
    envelopes_rate: float = 200.0  # bodies we ask one peer for, per second
    envelopes_burst: float = 2000.0


# --- events the shell acts on ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerReady:
    hello: Hello


@dataclass(frozen=True, slots=True)
class Announced:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Requested:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BodyReceived:
    envelope_id: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class ReconcileDone:
    have: tuple[bytes, ...]  # we hold, the peer lacks
    need: tuple[bytes, ...]  # the peer holds, we lack


@dataclass(frozen=True, slots=True)
class PeersHeard:
    addrs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WatchSet:
    tags: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class Outgoing:
    frame: bytes  # the machine itself answers (reconcile replies)


@dataclass(frozen=True, slots=True)
class Closed:
    reason: ByeReason
    text: str


Event = (
    PeerReady
    | Announced
    | Requested
    | BodyReceived
    | ReconcileDone
    | PeersHeard
    | WatchSet
    | Outgoing
    | Closed
)


def _chunks(items: list[bytes]) -> list[list[bytes]]:
    return [items[k : k + MAX_IDS] for k in range(0, len(items), MAX_IDS)]


class Link:
    """Gossip with one peer: call ``hello()``, feed frames to ``receive()``."""

    def __init__(
        self,
        local: LocalInfo,
        now: float,
        *,
        source: RangeSource | None = None,
        budgets: Budgets = Budgets(),
    ) -> None:
        self.local = local
        self.source = source  # our sorted index, to answer reconciliation (None: light)
        self.state = State.IDLE
        self.peer: Hello | None = None
        self.peer_has: dict[bytes, None] = {}  # insertion-ordered set, bounded
        self.peer_wants: set[bytes] = set()  # ids the peer asked for, not yet sent
        self.wanted: set[bytes] = set()  # ids we asked the peer for, not yet received
        self.watch_tags: frozenset[bytes] | None = None  # a light peer's tags
        self._bytes = TokenBucket(budgets.bytes_rate, budgets.bytes_burst, now)
        self._envelopes = TokenBucket(budgets.envelopes_rate, budgets.envelopes_burst, now)
        self._session: Reconciler | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    # --- the transition table --------------------------------------------------

    def _step(self, step: Step) -> None:
        nxt = TRANSITIONS[self.state].get(step)
        if nxt is None:
            err = (
                RemoteProtocolError if step in (Step.RECV, Step.RECV_HELLO) else LocalProtocolError
            )
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
    def reconciling(self) -> bool:
        return self._session is not None

    # --- sending ---------------------------------------------------------------

    def hello(self, now: int) -> bytes:
        loc = self.local
        msg = Hello(PROTOCOL_VERSION, loc.min_bits, now, loc.node_id, loc.light, loc.listen)
        return self._out(msg, Step.SEND_HELLO)

    def bye(self, reason: ByeReason, text: str = "") -> bytes:
        return self._out(Bye(reason, text), Step.SEND_BYE)

    def announce(self, ids: Iterable[bytes]) -> list[bytes]:
        """HAVE frames for the ids the peer is not known to have (and remember them)."""
        fresh = [i for i in ids if i not in self.peer_has]
        for i in fresh:
            self._remember(i)
        return [
            self._out(Have(tuple(fresh[k : k + MAX_IDS]))) for k in range(0, len(fresh), MAX_IDS)
        ]

    def request(self, ids: Iterable[bytes], now: float) -> tuple[list[bytes], list[bytes]]:
        """WANT frames for as many ids as the envelope budget allows, and the ids left over."""
        asked: list[bytes] = []
        left: list[bytes] = []
        for i in ids:
            if i in self.wanted:
                continue
            if self._envelopes.take(1, now):
                asked.append(i)
                self.wanted.add(i)
            else:
                left.append(i)
        frames = [
            self._out(Want(tuple(asked[k : k + MAX_IDS]))) for k in range(0, len(asked), MAX_IDS)
        ]
        return frames, left

    def send_body(self, eid: bytes, raw: bytes) -> bytes | None:
        """The ENVELOPE frame if the peer asked for this body; None otherwise."""
        if eid not in self.peer_wants:
            return None
        self.peer_wants.discard(eid)
        self._remember(eid)
        return self._out(EnvelopeBody(raw))

    def start_reconcile(self) -> bytes:
        if self.source is None or self._session is not None or not self.active:
            raise LocalProtocolError("cannot start a reconciliation now")
        if self.peer is None or self.peer.light:
            raise LocalProtocolError("light peers do not reconcile")
        self._session = Reconciler(self.source, initiator=True)
        return self._out(Reconcile(self._session.initiate(), reply=False))

    def peers(self, addrs: Iterable[str]) -> bytes:
        return self._out(Peers(tuple(addrs)[:MAX_PEERS]))

    def watch(self, tags: Iterable[bytes]) -> bytes:
        return self._out(Watch(tuple(sorted(set(tags)))[:MAX_TAGS]))

    # --- receiving -------------------------------------------------------------

    def receive(self, frame: bytes, now: int) -> list[Event]:
        """Parse one frame and apply it; raises ``RemoteProtocolError`` subclasses."""
        self.bytes_in += len(frame)
        if not self._bytes.take(len(frame), now):
            raise FloodError("peer exceeded its byte budget")
        msg = parse(frame)
        if isinstance(msg, Hello):
            self._step(Step.RECV_HELLO)
            self._check_hello(msg, now)
            self.peer = msg
            return [PeerReady(msg)]
        if isinstance(msg, Bye):
            self._step(Step.RECV_BYE)
            return [Closed(msg.reason, msg.text)]
        self._step(Step.RECV)
        if isinstance(msg, Have):
            for i in msg.ids:
                self._remember(i)
            return [Announced(msg.ids)]
        if isinstance(msg, Want):
            self.peer_wants.update(msg.ids)
            return [Requested(msg.ids)]
        if isinstance(msg, EnvelopeBody):
            check_size(msg.raw)  # cheapest first: a wrong length is not worth a hash
            eid = envelope_id(msg.raw)
            if eid not in self.wanted:
                raise UnrequestedError("envelope body that was never requested")
            self.wanted.discard(eid)
            self._remember(eid)
            return [BodyReceived(eid, msg.raw)]
        if isinstance(msg, Reconcile):
            return self._reconcile(msg)
        if isinstance(msg, Peers):
            return [PeersHeard(msg.addrs)]
        self.watch_tags = frozenset(msg.tags)
        return [WatchSet(self.watch_tags)]

    def _check_hello(self, msg: Hello, now: int) -> None:
        if msg.version != PROTOCOL_VERSION:
            raise HelloRefused(ByeReason.VERSION, f"protocol version {msg.version} is unknown")
        if abs(msg.clock - now) > MAX_CLOCK_SKEW:
            raise HelloRefused(
                ByeReason.CLOCK, f"clocks differ by {msg.clock - now} s (limit {MAX_CLOCK_SKEW})"
            )
        if msg.node_id == self.local.node_id:
            raise HelloRefused(ByeReason.SELF, "connected to itself")

    def _reconcile(self, msg: Reconcile) -> list[Event]:
        if not msg.reply:
            if self.source is None:
                raise RemoteProtocolError("reconciliation asked of a light node")
            reply = Reconciler(self.source, initiator=False).receive(msg.payload)
            assert reply is not None  # a responder always answers
            return [Outgoing(self._out(Reconcile(reply, reply=True)))]
        session = self._session
        if session is None:
            raise RemoteProtocolError("reconcile reply without a session")
        nxt = session.receive(msg.payload)
        if nxt is not None:
            return [Outgoing(self._out(Reconcile(nxt, reply=False)))]
        self._session = None
        return [ReconcileDone(tuple(session.have), tuple(session.need))]

    def _remember(self, eid: bytes) -> None:
        has = self.peer_has
        has[eid] = None
        if len(has) > PEER_HAS_MEMORY:
            del has[next(iter(has))]
