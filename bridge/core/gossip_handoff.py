"""Hand-off links (docs/sharding.md, "Sending to another shard"; HELLO flag bit 1).

A node that does not carry a recipient's shard opens a short link to a carrier with
the hand-off flag in its HELLO, announces the ids of its own envelopes in that shard
and sends each body the carrier asks for. Such a link carries nothing else:

  * the sender (``LocalInfo.handoff``) sends HAVE, bodies asked for, and BYE; from
    the carrier it takes WANT and BYE only;
  * the carrier takes HAVE and bodies under its own prefixes (the usual rule:
    ``ShardError`` outside them, ``UnrequestedError`` for one it did not ask for) and
    BYE; anything else from the sender (WANT, RECONCILE, PEERS, WATCH, FIND_SHARD) is
    a protocol violation; it announces nothing back (``announce`` gives no frame),
    never reconciles on it (``overlaps`` is empty) and sends no addresses;
  * a hand-off link may offer at most ``Budgets.handoff_ids`` ids: one more is a
    flood (``FloodError``); once as many bodies arrived, ``handoff_spent`` tells the
    carrier's shell to close it;
  * only a node with a store takes hand-off links: a light node, or one that is itself
    handing off, refuses such a HELLO (BYE VERSION).

A mixin of ``gossip.Link``, which holds the state.
"""

from __future__ import annotations

from bridge.core.errors import RemoteProtocolError
from bridge.core.gossip_events import Budgets, FloodError, HelloRefused, LocalInfo
from bridge.core.gossip_wire import ByeReason, EnvelopeBody, Have, Hello, Message, Want
from bridge.core.reconcile import RangeSource


class HandoffLink:
    local: LocalInfo
    peer: Hello | None
    budgets: Budgets
    source: RangeSource | None
    offered = 0  # ids the sender offered on this hand-off link (the carrier's count)
    taken = 0  # bodies that arrived on it

    @property
    def handoff(self) -> bool:
        """This is a hand-off link, whichever end we are."""
        return self.local.handoff or (self.peer is not None and self.peer.handoff)

    @property
    def handoff_spent(self) -> bool:
        """The carrier has taken as many bodies as a hand-off link may carry: close it."""
        return (self.peer is not None and self.peer.handoff
                and self.taken >= self.budgets.handoff_ids)

    def _check_handoff_hello(self, msg: Hello) -> None:
        if msg.handoff and (self.local.light or self.local.handoff or self.source is None):
            raise HelloRefused(ByeReason.VERSION, "this node takes no hand-off links")

    def _handoff_frame(self, msg: Message) -> None:
        """What a hand-off link may carry (after HELLO; BYE is always allowed)."""
        if self.local.handoff:  # we offer: the carrier only asks
            if not isinstance(msg, Want):
                raise RemoteProtocolError(f"{type(msg).__name__} from a carrier on a hand-off link")
            return
        if isinstance(msg, Have):
            self.offered += len(msg.ids)
            if self.offered > self.budgets.handoff_ids:
                raise FloodError(f"more than {self.budgets.handoff_ids} ids on a hand-off link")
        elif isinstance(msg, EnvelopeBody):
            self.taken += 1
        else:
            raise RemoteProtocolError(f"{type(msg).__name__} on a hand-off link")
