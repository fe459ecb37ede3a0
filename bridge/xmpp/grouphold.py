"""Group messages that arrived while no client of the identity was in the room: kept
in RAM, bounded, and given to the first client that joins it, as XEP-0045 discussion
history with XEP-0203 delay stamps (docs/xmpp-mapping.md, "Private groups").

The service counts a group message as shown when it hands it over, so what waits here
is lost if the daemon stops before a client joins; past ``MAX_HELD`` per room (or
``MAX_ROOMS`` rooms, or ``MAX_BYTES`` of text per identity) the oldest go first.
"""

from __future__ import annotations

from collections import deque

from bridge.events import GroupMessageArrived

MAX_HELD = 100  # messages per room
MAX_ROOMS = 64  # rooms per identity with messages waiting (one per group)
MAX_BYTES = 1 << 20  # text held per identity


class GroupHold:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, deque[GroupMessageArrived]]] = {}  # owner -> group

    def hold(self, event: GroupMessageArrived) -> None:
        rooms = self._held.setdefault(event.to, {})
        if event.group not in rooms and len(rooms) >= MAX_ROOMS:
            return
        rooms.setdefault(event.group, deque(maxlen=MAX_HELD)).append(event)
        while sum(len(e.text.encode()) for q in rooms.values() for e in q) > MAX_BYTES:
            biggest = max(rooms.values(), key=len)
            biggest.popleft()

    def take(self, owner: str, group: str) -> list[GroupMessageArrived]:
        """What waits for ``owner``'s room of ``group``, oldest first; it waits no more."""
        rooms = self._held.get(owner, {})
        out = list(rooms.pop(group, ()))
        if not rooms:
            self._held.pop(owner, None)
        return out

    def forget(self, owner: str, group: str | None = None) -> None:
        if group is None:
            self._held.pop(owner, None)
        else:
            self.take(owner, group)
