"""The records of batches a daemon received (``bridge.core.batch``) while it waits
for a client to take each: the envelope's message key is kept in the session until
every record in it is done, then released and the envelope recorded as shown."""

from __future__ import annotations

from collections.abc import Callable

# Records of batches whose envelope's key is held until a client has each of them
MAX_PARTS = 200_000


class BatchParts:
    def __init__(self, release_key: Callable[[bytes], None],
                 shown: Callable[[bytes, int], None], cap: int = MAX_PARTS) -> None:
        self._release_key = release_key  # SessionBook.release: the envelope's held key
        self._shown = shown  # SeenIds.add
        self._cap = cap
        self._parts: dict[bytes, tuple[bytes, int]] = {}  # record id -> (envelope id, expiry)
        self._left: dict[bytes, int] = {}  # envelope id -> its records not yet done

    def __len__(self) -> int:
        return len(self._parts)

    def expect(self, envelope_id: bytes, expiry: int, record_ids: list[bytes]) -> None:
        """A batch was opened: its key is released once each record is ``done``."""
        while self._parts and len(self._parts) + len(record_ids) > self._cap:
            # past the bound the oldest envelope's key stays until it ages out
            self._parts.pop(next(iter(self._parts)))
        for rid in record_ids:
            self._parts[rid] = (envelope_id, expiry)
        self._left[envelope_id] = len(record_ids)

    def done(self, rid: bytes) -> None:
        """A record no client will take again (or a message that came alone): the key
        its envelope was opened with goes once every record in it is done."""
        part = self._parts.pop(rid, None)
        if part is None:
            self._release_key(rid)
            return
        env_id, expiry = part
        left = self._left.get(env_id, 1) - 1
        if left > 0:
            self._left[env_id] = left
            return
        self._left.pop(env_id, None)
        self._release_key(env_id)
        self._shown(env_id, expiry)  # nothing in it is news any more

    def purge(self, now: int) -> None:
        self._parts = {r: p for r, p in self._parts.items() if p[1] > now}
        envs = {env_id for env_id, _ in self._parts.values()}
        self._left = {e: n for e, n in self._left.items() if e in envs}
