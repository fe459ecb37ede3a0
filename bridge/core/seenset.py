"""The ids of envelopes already shown to the user, bounded and expiring.

Kept in the key file (``bridge.store.keystore``), so in both storage modes a
restarted daemon does not show again what a peer still holds or a relay replays.
An entry lives until its envelope expires: after that no node accepts the envelope
(``checks.check_envelope``), so nobody can replay it. Past ``MAX_SEEN`` entries those
expiring soonest are dropped first, an eighth of the cap at once; they are the least
likely to come back. The encoding is kept up to date as ids are added, so saving the
key file after each burst of arrivals does not pass over every id remembered.

Ids are kept as their first 16 bytes. Ids are BLAKE3 outputs over an envelope's
content: to have a new message taken for one already seen, a sender would need a
second preimage of 128 bits; two honest envelopes collide with probability about
n²/2¹²⁹.

Encoding (local only, inside the key file)::

    version u8 = 1 ‖ count × (id prefix[16] ‖ expiry u32, unix seconds)

in no particular order. ``from_bytes`` is strict; the key store treats a bad
section as empty (it loses only duplicate suppression, never an identity).
"""

from __future__ import annotations

import heapq
import struct

ID_BYTES = 16
ENTRY = struct.Struct(">16sI")
VERSION = 1
MAX_SEEN = 65_536


class SeenSetError(ValueError):
    pass


class SeenSet:
    def __init__(self, cap: int = MAX_SEEN) -> None:
        self.cap = cap
        self._expiry: dict[bytes, int] = {}
        self._order: list[tuple[int, bytes]] = []  # heap by expiry; entries never change
        # ``to_bytes`` kept up to date as ids are added (a save must not cost a pass over
        # every id it holds); None after a removal, rebuilt at the next ``to_bytes``
        self._encoded: bytearray | None = bytearray([VERSION])

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, envelope_id: object) -> bool:
        return isinstance(envelope_id, bytes) and envelope_id[:ID_BYTES] in self._expiry

    def add(self, envelope_id: bytes, expiry: int) -> bool:
        """Remember an id until ``expiry``; False if it was already there."""
        key = envelope_id[:ID_BYTES]
        if len(key) != ID_BYTES:
            raise SeenSetError("an envelope id has at least 16 bytes")
        if key in self._expiry:
            return False
        expiry = min(max(expiry, 0), 0xFFFFFFFF)
        self._expiry[key] = expiry
        heapq.heappush(self._order, (expiry, key))
        if self._encoded is not None:
            self._encoded += ENTRY.pack(key, expiry)
        if len(self._expiry) > self.cap:
            # past the cap, an eighth goes at once (soonest expiring first), so the
            # encoding is rebuilt once per cap/8 additions, not at every one
            while len(self._expiry) > self.cap - self.cap // 8:
                _, old = heapq.heappop(self._order)
                del self._expiry[old]
            self._encoded = None
        return True

    def purge(self, now: int) -> int:
        """Forget every id whose envelope has expired; how many went."""
        gone = 0
        while self._order and self._order[0][0] <= now:
            _, key = heapq.heappop(self._order)
            del self._expiry[key]
            gone += 1
        if gone:
            self._encoded = None
        return gone

    def clear(self) -> None:
        self._expiry.clear()
        self._order.clear()
        self._encoded = bytearray([VERSION])

    def to_bytes(self) -> bytes:
        if self._encoded is None:
            self._encoded = bytearray([VERSION])
            self._encoded += b"".join(map(ENTRY.pack, self._expiry, self._expiry.values()))
        return bytes(self._encoded)

    def load(self, data: bytes) -> None:
        """Replace the contents with a decoded ``to_bytes`` output (strict)."""
        if not data:
            self.clear()
            return
        if data[0] != VERSION:
            raise SeenSetError(f"seen-set version {data[0]} is not supported")
        body = memoryview(data)[1:]
        if len(body) % ENTRY.size:
            raise SeenSetError("the seen-set is cut short")
        if len(body) // ENTRY.size > self.cap:
            raise SeenSetError("the seen-set holds more ids than its cap")
        entries = [ENTRY.unpack_from(body, off) for off in range(0, len(body), ENTRY.size)]
        expiry = dict(entries)
        if len(expiry) != len(entries):
            raise SeenSetError("the seen-set names an id twice")
        self._expiry = expiry
        self._order = [(e, k) for k, e in entries]
        heapq.heapify(self._order)
        self._encoded = bytearray(data)
