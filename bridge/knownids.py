"""Which message ids a conversation holds, so an act names a message that exists.

An act (correction, reaction, retraction, reply, read marker) names a message by
the XMPP id the person's clients know it by: for a message the identity sent, the
id its client gave it (``message_id``); for one it was shown, the id the gateway
gave the stanza (the sender's message id, or the first 32 hex digits of the
envelope id when the sender gave none). The outbox refuses an act naming an id
that is neither, so a client cannot make the daemon send acts about nothing.

Ids are remembered per (identity, contact), the newest ``PER_PEER`` of each, in at
most ``MAX_PEERS`` conversations; an id not remembered (older, or from before a
restart) is looked up in the identity's archive (XEP-0313), which keeps the sending
client's id of every message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from bridge.core.acts import TEXT_ACTS
from bridge.core.archive import Entry
from bridge.events import Event, IdentitiesChanged, MessageArrived

PER_PEER = 1000
MAX_PEERS = 4096


def shown_id(event: MessageArrived) -> str:
    """The id the gateway gives a message from the network (``Delivery``)."""
    return event.message_id or event.envelope_id.hex()[:32]


class KnownIds:
    def __init__(self, archived: Callable[[str], list[Entry]]) -> None:
        self.archived = archived  # an identity's archive entries, oldest first
        self._ids: OrderedDict[tuple[str, str], OrderedDict[str, None]] = OrderedDict()

    def add(self, owner: str, peer: str, message_id: str) -> None:
        if not message_id:
            return
        key = (owner, peer)
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids[key] = OrderedDict()
            while len(self._ids) > MAX_PEERS:
                self._ids.popitem(last=False)
        self._ids.move_to_end(key)
        ids[message_id] = None
        ids.move_to_end(message_id)
        while len(ids) > PER_PEER:
            ids.popitem(last=False)

    def on_event(self, event: Event) -> None:
        if isinstance(event, MessageArrived) and (event.act is None
                                                   or event.act.kind in TEXT_ACTS):
            self.add(event.to, event.sender, shown_id(event))
        elif isinstance(event, IdentitiesChanged) and event.removed:
            self._ids = OrderedDict((k, v) for k, v in self._ids.items()
                                    if k[0] != event.removed)

    def knows(self, owner: str, peer: str, message_id: str) -> bool:
        ids = self._ids.get((owner, peer))
        if ids is not None and message_id in ids:
            return True
        return any(e.peer == peer and not e.groupchat and e.origin_id == message_id
                   for e in reversed(self.archived(owner)))
