"""What a picture shown for an identity may be, and how often a contact may change it.

One rule for both ends: a picture is 1..``MAX_AVATAR`` bytes and starts as a PNG or
a JPEG does (its magic bytes; nothing else of it is parsed). The identity's clients
set it (``bridge.xmpp.avatars``); a contact's daemon sends it
(``bridge.avatarbook``), and a recipient checks the size a chunk announces before it
keeps a byte, and the magic once the picture is whole.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from bridge.core.errors import MalformedError

# Bytes of picture. Gajim publishes a 200x200 PNG, which for a photo is often 60-110 KB.
MAX_AVATAR: Final = 128 * 1024
TYPES: Final = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def media_type(data: bytes) -> str:
    """"image/png" or "image/jpeg"; MalformedError for anything else or too large."""
    if not 1 <= len(data) <= MAX_AVATAR:
        raise MalformedError(f"an avatar is 1..{MAX_AVATAR} bytes, not {len(data)}")
    for magic, mtype in TYPES.items():
        if data.startswith(magic):
            return mtype
    raise MalformedError("an avatar must be a PNG or a JPEG image")


class ChangeRate:
    """At most ``limit`` events in any ``window`` seconds, by the caller's clock."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def allows(self, now: float) -> bool:
        self._trim(now)
        return len(self._times) < self.limit

    def take(self, now: float) -> bool:
        """Count one event at ``now``; False (and not counted) when over the limit."""
        if not self.allows(now):
            return False
        self._times.append(now)
        return True

    def next_free(self, now: float) -> float:
        """When the next event is allowed (``now`` if at once)."""
        self._trim(now)
        return now if len(self._times) < self.limit else self._times[0] + self.window
