"""The inbox's watch table as the daemon keeps it: which tags to open, for which
identity and contact (``core.watch``), rebuilt whole each epoch and changed one
contact at a time in between, with each pair secret (an X25519 agreement, the one
costly step) computed once per contact."""

from __future__ import annotations

from collections.abc import Callable

from bridge.contacts import BLOCKED, ContactBook
from bridge.core import crypto, tags
from bridge.core.address import decode_address
from bridge.core.watch import Purpose, Watch, Watcher, WatchTable, contact_watches, watch_table
from bridge.identities import IdentityBook


class Watching:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, clock: Callable[[], int],
                 rooms: tuple[str, ...]) -> None:
        self.ids, self.contacts, self.clock, self.rooms = ids, contacts, clock, rooms
        self.table: WatchTable = {}
        self._pairs: dict[tuple[bytes, bytes], bytes] = {}  # (our key, theirs) -> pair secret

    def rebuild(self) -> None:
        """Every identity's tags for every epoch an envelope may still be alive in."""
        watchers = []
        for rec in self.ids.records():
            ident = self.ids.ident(rec)
            watchers.append(Watcher(ident.public, ident.x25519_secret, tuple(
                decode_address(c.address) for c in rec.contacts if c.state != BLOCKED)))
        wanted = {(w.public, their) for w in watchers for their in w.contacts}
        self._pairs = {k: v for k, v in self._pairs.items() if k in wanted}  # none kept stale
        self.table = watch_table(watchers, self.rooms, tags.watch_epochs(self.clock()),
                                 pair_secret=self._pair_secret)

    def shard_keys(self) -> tuple[int, ...]:
        """The shard keys of every identity and room: what a light node asks for."""
        pubs = [self.ids.ident(rec).public for rec in self.ids.records()]
        if pubs:
            pubs += [crypto.x25519_public(tags.room_secret(r)) for r in self.rooms]
        return tuple(sorted({int.from_bytes(tags.shard_key(p), "big") for p in pubs}))

    def watches(self, tag: bytes) -> bool:
        return tag in self.table

    def watched(self) -> dict[bytes, frozenset[Watch]]:
        """The watch table as it stands (order within a tag does not matter)."""
        return {tag: frozenset(ws) for tag, ws in self.table.items()}

    def contact(self, owner: str, address: str) -> list[bytes]:
        """One contact changed: add or drop its tags, leaving the rest of the table
        alone (a full rebuild costs hashes for every contact of every identity).
        Returns the contact's announcement tags now watched: what the node already
        holds under them (their keys and endpoint) is worth opening at once."""
        self._unwatch(owner, address)
        rec = self.ids.rec(owner)
        c = self.contacts.find(rec, address)
        if c is None or c.state == BLOCKED:
            return []
        ident = self.ids.ident(rec)
        w = Watcher(ident.public, ident.x25519_secret, ())
        announced = []
        for tag, watch in contact_watches(w, decode_address(address),
                                          tags.watch_epochs(self.clock()),
                                          pair_secret=self._pair_secret):
            self.table[tag] = (*self.table.get(tag, ()), watch)
            if watch.purpose is Purpose.ANNOUNCE:
                announced.append(tag)
        return announced

    def _unwatch(self, owner: str, address: str) -> None:
        their = decode_address(address)
        ident = self.ids.ident(self.ids.rec(owner))
        secret = self._pairs.pop((ident.public, their), None)
        epochs = tags.watch_epochs(self.clock())
        candidates = [tags.announce_tag(their, e) for e in epochs]
        candidates += [tags.announce_tag_v2(their, e) for e in epochs]
        if secret is not None:
            candidates += [tags.pair_tag(secret, e) for e in epochs]
            candidates += [tags.pair_tag_to(secret, ident.public, e) for e in epochs]
        for tag in candidates:
            kept = tuple(w for w in self.table.get(tag, ())
                         if not (w.owner == owner and w.subject == address))
            if kept:
                self.table[tag] = kept
            else:
                self.table.pop(tag, None)

    def _pair_secret(self, x25519_secret: bytes, public: bytes, their: bytes) -> bytes:
        secret = self._pairs.get((public, their))
        if secret is None:
            secret = self._pairs[(public, their)] = tags.pair_secret(x25519_secret, public,
                                                                     their)
        return secret
