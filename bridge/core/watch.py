"""The watch table: which recipient tags a daemon opens, and why.

For each local identity it watches, in every epoch a message may still be
stamped with (``tags.watch_epochs``): its own address tag (first contacts),
the pair tag it shares with each contact (version 1, after the first reply),
the pair tag *to* it from each contact (version 2), and each contact's
announcement tag (their prekeys and endpoint); plus each room's tag once any
identity exists. Address, announcement and room tags come in both versions
(version 2's start with the recipient's shard key, ``tags.address_tag_v2``). A pair
tag is shared by both ends, so a daemon also sees its own
version-1 envelopes come back under it: the ``pair`` flag lets the caller tell
such an echo from a real refusal; under a pair tag to it (``inbound``) nothing of
its own comes back. Pure: keys in, table out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bridge.core import crypto, tags
from bridge.core.address import encode_address


class Purpose(enum.Enum):
    DIRECT = "direct"  # a direct message or receipt for ``owner``
    ANNOUNCE = "announce"  # the contact ``subject``'s announcement
    ROOM = "room"  # a message in the room ``subject``, for every identity


@dataclass(frozen=True, slots=True)
class Watch:
    owner: str  # the local identity's address; "" for rooms (every identity)
    purpose: Purpose
    subject: str = ""  # the contact's address (pair tags, announcements) or the room
    pair: bool = False  # a pair tag: the contact ``subject`` is the only other who has it
    inbound: bool = False  # the pair tag to us (version 2), not the shared one (version 1)


@dataclass(frozen=True, slots=True)
class Watcher:
    """One local identity as the table needs it: its keys and the contacts it hears."""

    public: bytes
    x25519_secret: bytes
    contacts: Sequence[bytes]  # public keys of contacts not blocked


WatchTable = dict[bytes, tuple[Watch, ...]]


PairSecret = Callable[[bytes, bytes, bytes], bytes]  # as tags.pair_secret


def contact_watches(w: Watcher, their: bytes, epochs: Iterable[int], *,
                    pair_secret: PairSecret = tags.pair_secret) -> list[tuple[bytes, Watch]]:
    """The tags one contact adds to the table: both pair tags and their announcements."""
    me, them = encode_address(w.public), encode_address(their)
    secret = pair_secret(w.x25519_secret, w.public, their)
    out: list[tuple[bytes, Watch]] = []
    for e in epochs:
        out.append((tags.pair_tag(secret, e), Watch(me, Purpose.DIRECT, them, pair=True)))
        out.append((tags.pair_tag_to(secret, w.public, e),
                    Watch(me, Purpose.DIRECT, them, pair=True, inbound=True)))
        out.append((tags.announce_tag(their, e), Watch(me, Purpose.ANNOUNCE, them)))
        out.append((tags.announce_tag_v2(their, e), Watch(me, Purpose.ANNOUNCE, them)))
    return out


def watch_table(watchers: Iterable[Watcher], rooms: Iterable[str], epochs: Iterable[int], *,
                pair_secret: PairSecret = tags.pair_secret) -> WatchTable:
    """The whole table. ``pair_secret`` may be a cache in front of the X25519 agreement
    (the one costly step; everything else is a hash)."""
    table: dict[bytes, list[Watch]] = {}
    epochs = tuple(epochs)
    any_identity = False
    for w in watchers:
        any_identity = True
        me = encode_address(w.public)
        for e in epochs:
            for tag in (tags.address_tag(w.public, e), tags.address_tag_v2(w.public, e)):
                table.setdefault(tag, []).append(Watch(me, Purpose.DIRECT))
        for their in w.contacts:
            for tag, watch in contact_watches(w, their, epochs, pair_secret=pair_secret):
                table.setdefault(tag, []).append(watch)
    if any_identity:
        for room in rooms:
            room_pub = crypto.x25519_public(tags.room_secret(room))
            for e in epochs:
                for tag in (tags.room_tag(room_pub, e), tags.room_tag_v2(room_pub, e)):
                    table.setdefault(tag, []).append(Watch("", Purpose.ROOM, room))
    return {tag: tuple(ws) for tag, ws in table.items()}
