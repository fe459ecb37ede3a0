"""What waits for an identity while none of its clients is online: bounded, never silently.

Messages and receipts the network delivers while an identity has no available
client wait here, in RAM, until its next initial presence. Each identity's
queue holds at most ``max_events`` events and ``max_bytes`` (message text plus
a fixed overhead per event). What does not fit is not kept, and that is never
silent:

- the gateway does not tell the service the message was delivered, so it is
  shown again after the daemon restarts (peers, or the SQLite store, offer it
  again, and it was never recorded as shown);
- the log says so at the first message not kept, and again with the count when
  a client comes back;
- the person is told how many were not kept, by the bot, when they log in.

The oldest messages are kept and newer ones refused, so what is shown is the
start of the conversation in order, and a gap only at its end.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from bridge.events import Event, MessageArrived, ReceiptArrived

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # per identity
MAX_BYTES = 1024 * 1024  # per identity: message text plus OVERHEAD per event
OVERHEAD = 128  # ids, sender, timestamps of one event


def size_of(event: Event) -> int:
    if isinstance(event, MessageArrived):
        return OVERHEAD + len(event.text.encode())
    if isinstance(event, ReceiptArrived):
        return OVERHEAD + sum(len(i) for i in event.message_ids) + 32 * len(event.acked)
    return OVERHEAD


@dataclass
class Held:
    """One identity's queue and what it could not keep since the last login."""

    events: deque[Event] = field(default_factory=deque)
    bytes: int = 0
    dropped_messages: int = 0
    dropped_bytes: int = 0
    dropped_receipts: int = 0

    @property
    def dropped(self) -> bool:
        return bool(self.dropped_messages or self.dropped_receipts)


class OfflineQueues:
    def __init__(self, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._held: dict[str, Held] = {}

    def hold(self, owner: str, event: Event) -> bool:
        """Keep ``event`` for ``owner``; False (and counted) when the queue is full."""
        held = self._held.setdefault(owner, Held())
        size = size_of(event)
        if len(held.events) < self.max_events and held.bytes + size <= self.max_bytes:
            held.events.append(event)
            held.bytes += size
            return True
        if not held.dropped:
            log.warning("offline queue of %s… is full (%d events, %d bytes): newer messages "
                        "are not kept until one of its clients is online", owner[:8],
                        len(held.events), held.bytes)
        if isinstance(event, MessageArrived):
            held.dropped_messages += 1
            held.dropped_bytes += size
        else:
            held.dropped_receipts += 1
        return False

    def take(self, owner: str) -> Held | None:
        """Everything held for ``owner`` (and the count of what was not), emptied."""
        held = self._held.pop(owner, None)
        if held is not None and held.dropped:
            log.warning("%d messages (%d bytes) and %d receipts for %s… were not kept while "
                        "no client was online", held.dropped_messages, held.dropped_bytes,
                        held.dropped_receipts, owner[:8])
        return held

    def discard(self, owner: str) -> None:
        self._held.pop(owner, None)

    def owners(self) -> list[str]:
        return list(self._held)

    def __len__(self) -> int:
        return sum(len(h.events) for h in self._held.values())


def notice(held: Held, queues: OfflineQueues) -> str:
    """What the person is told at login when messages were not kept."""
    what = f"{held.dropped_messages} message{'s' if held.dropped_messages != 1 else ''}"
    if not held.dropped_messages:
        what = f"{held.dropped_receipts} delivery receipts"
    return (f"{what} arrived while none of your clients was online and could not be kept: "
            f"the daemon holds at most {queues.max_events} messages or "
            f"{queues.max_bytes // 1024} KiB per identity for clients that are offline. "
            "They were not marked as delivered, so with --storage sqlite they are shown "
            "again after the daemon restarts.")
