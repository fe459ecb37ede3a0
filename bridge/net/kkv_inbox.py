"""The RAM inbox behind the kkv-style endpoints: what was delivered directly,
until its subscriber (the node) takes it or the local read endpoints delete it.

Bounded by a message count; every envelope that arrives is handed to whoever
subscribed with ``on_envelope``. An envelope leaves once it has expired, whether
or not anyone took it, so an envelope nobody can take never holds a slot for good.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.core import kkv_records
from bridge.core.envelope import envelope_id, parse_envelope
from bridge.core.errors import ParanoimError

log = logging.getLogger(__name__)

# Plain or async; an async result is awaited (e.g. ``node.publish``, which returns
# the checked Envelope). What it returns is ignored.
EnvelopeCallback = Callable[[bytes], object]


# --- the inbox -----------------------------------------------------------------------------


class InboxFullError(ParanoimError):
    """The inbox holds its maximum number of messages."""


@dataclass(slots=True)
class InboxMessage:
    envelope: bytes
    id: bytes
    received: int
    sender_key: bytes  # the delivering client's transport key, not the author's identity
    expiry: int  # the envelope's own expiry: the message leaves the inbox then
    read: bool = False

    def to_json(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "id": self.id.hex(),
            "envelope": kkv_records.b64(self.envelope),
            "received": self.received,
            "read": self.read,
            "sender_key": kkv_records.b64(self.sender_key),
        }


@dataclass
class KkvInbox:
    """The RAM inbox of directly delivered envelopes, capped at ``max_messages`` (kkv: 50).

    Nothing here is written to disk; it vanishes with the process, as kkv's does.
    """

    max_messages: int = kkv_records.DEFAULT_MAX_MESSAGES
    messages: list[InboxMessage] = field(default_factory=list)
    _callbacks: list[EnvelopeCallback] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def full(self) -> bool:
        return len(self.messages) >= self.max_messages

    def purge(self, now: int) -> int:
        """Drop every message whose envelope has expired at ``now``; how many went."""
        kept = [m for m in self.messages if m.expiry > now]
        gone = len(self.messages) - len(kept)
        self.messages[:] = kept
        return gone

    def on_envelope(self, callback: EnvelopeCallback) -> Callable[[], None]:
        """Call ``callback(raw_envelope)`` (plain or async) for every new envelope.

        Returns a function that unsubscribes it.
        """
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def add(self, envelope: bytes, sender_key: bytes, now: int) -> bool:
        """Store a checked envelope; False when it is already here. Raises InboxFullError."""
        eid = envelope_id(envelope)
        self.purge(now)
        if any(m.id == eid for m in self.messages):
            return False
        if self.full:
            raise InboxFullError(
                f"the inbox is full ({self.max_messages} messages); try again later "
                "or send through the network"
            )
        expiry = parse_envelope(envelope).expiry
        self.messages.append(InboxMessage(envelope, eid, now, sender_key, expiry))
        return True

    def remove(self, envelope_id: bytes) -> bool:
        """Drop the message with this envelope id (once its subscriber has taken it over)."""
        for m in self.messages:
            if m.id == envelope_id:
                self.messages.remove(m)
                return True
        return False

    async def dispatch(self, envelope: bytes) -> None:
        """Hand ``envelope`` to every subscriber; one failing does not stop the others."""
        for cb in list(self._callbacks):
            try:
                result = cb(envelope)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("an inbox subscriber failed on a direct envelope")

    def pick(self, index: int, expect_id: bytes | None) -> InboxMessage:
        if not 0 <= index < len(self.messages):
            raise LookupError(f"no message at index {index} (the inbox holds {len(self.messages)})")
        m = self.messages[index]
        if expect_id is not None and m.id != expect_id:
            raise ValueError(
                f"the message at index {index} is no longer the one with this "
                "id; list the inbox again"
            )
        return m


