"""What the gossip link state machine (``bridge.core.gossip``) takes and gives: who we
are, the budgets a link enforces, the errors a peer can earn, and the events the
shell acts on. Re-exported by ``bridge.core.gossip``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bridge.core.errors import RemoteProtocolError
from bridge.core.gossip_wire import ByeReason, Hello
from bridge.core.shards import EVERYTHING, Prefix

PEER_HAS_MEMORY: Final = 50_000  # ids remembered per link by default (oldest forgotten first)


class HelloRefused(RemoteProtocolError):
    """The peer's hello cannot be accepted; ``reason`` goes into our BYE."""

    def __init__(self, reason: ByeReason, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class FloodError(RemoteProtocolError):
    """The peer sent more than its byte budget allows."""


class UnrequestedError(RemoteProtocolError):
    """The peer sent an envelope body we never asked it for."""


class ShardError(RemoteProtocolError):
    """The peer sent a body, or asked a reconciliation, outside the shards we carry."""


@dataclass(frozen=True, slots=True)
class LocalInfo:
    node_id: bytes
    min_bits: int
    light: bool = False
    listen: str = ""
    shards: tuple[Prefix, ...] = EVERYTHING  # the prefixes we carry (canonical)
    handoff: bool = False  # we open this link to hand envelopes to a carrier (HELLO bit 1)


@dataclass(frozen=True, slots=True)
class Budgets:
    bytes_rate: float = 4 * 1024 * 1024  # per second
    bytes_burst: float = 16 * 1024 * 1024
    frames_rate: float = 2000.0  # frames of any kind, per second (exceeding it is a flood)
    frames_burst: float = 20000.0
    envelopes_rate: float = 200.0  # bodies we ask one peer for, per second
    envelopes_burst: float = 2000.0
    # What one peer may make us do, per second and in a burst; the excess is ignored, and
    # a peer owing more than ``drop_factor`` bursts is a flood.
    have_rate: float = 2000.0  # announced ids looked at
    have_burst: float = 8192.0
    want_rate: float = 1000.0  # requested ids looked at
    want_burst: float = 8192.0
    # WATCH_SHARD frames from a light peer (each starts a reconciliation): each of 16
    # prefixes twice a minute, where a light node asks once in 45-75 s; a new link's
    # half burst asks for all 16 at once
    watch_shard_rate: float = 16 / 30
    watch_shard_burst: float = 32.0
    peers_rate: float = 0.5  # PEERS frames
    peers_burst: float = 32.0  # one address book's worth (1,024 addresses) at once
    find_rate: float = 0.5  # FIND_SHARD frames answered (each from the address book)
    find_burst: float = 16.0  # one for each prefix a node may carry, at once
    max_finds: int = 16  # our FIND_SHARD frames awaiting their answer, per link
    reconcile_rate: float = 20.0  # reconciliation requests answered
    reconcile_burst: float = 256.0
    drop_factor: float = 2.0
    # What one link remembers.
    max_wanted: int = 2048  # ids asked of the peer, not yet received
    want_ttl: float = 300.0  # after which an unanswered request is forgotten
    max_peer_wants: int = 2048  # ids the peer asked for, not yet sent (its max_wanted)
    peer_has_ids: int = PEER_HAS_MEMORY
    resend_after: float = 60.0  # a body goes to one peer at most once in this window
    handoff_ids: int = 64  # ids one hand-off link may offer (more is a flood); then it closes


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
    prefix: Prefix = EVERYTHING[0]  # the shards the session covered


@dataclass(frozen=True, slots=True)
class PeersHeard:
    addrs: tuple[str, ...]
    carried: tuple[tuple[Prefix, ...], ...] | None = None  # per address; () not known


@dataclass(frozen=True, slots=True)
class ShardAsked:
    prefix: Prefix  # the peer asks which nodes carry it: answer with ``Link.shard_peers``


@dataclass(frozen=True, slots=True)
class ShardPeersHeard:
    prefix: Prefix  # we asked; carriers of it, each with its prefixes
    addrs: tuple[str, ...]
    carried: tuple[tuple[Prefix, ...], ...]


@dataclass(frozen=True, slots=True)
class ShardWatched:
    prefix: Prefix  # a light peer asked for it; new envelopes under it go to it


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
    | ShardAsked
    | ShardPeersHeard
    | ShardWatched
    | Outgoing
    | Closed
)
