"""Recipient tags, room keys and announcement keys.

A node must not learn which address an envelope is for, yet a recipient must
find its envelopes among all others without trying to open each. The 16-byte
tag in the outer header does that:

    address tag = derive(CTX_RECIPIENT_TAG, pub ‖ epoch)[:16]      anyone who knows the address
    pair tag    = derive(CTX_PAIR_TAG, pair secret ‖ epoch)[:16]   only the two contacts
    pair secret = derive(CTX_PAIR_SECRET, low pub ‖ high pub ‖ X25519(a, B))
    pair tag to = derive(CTX_PAIR_TAG_TO, pair secret ‖ recipient pub ‖ epoch)[:16]

Version-2 tags start with the recipient's **shard key** (docs/sharding.md), which
never rotates, followed by the first 14 bytes of the tag above:

    shard key   = derive(CTX_SHARD_KEY, recipient pub)[:2]    (a room: its public key)
    v2 tag      = shard key ‖ tag[:14]

so a network of 2^k shards puts an envelope in the shard of its tag's first k bits.

Version-1 envelopes between contacts go under the pair tag, which both ends share,
so each end also sees its own come back; version-2 envelopes (sessions) go under the
pair tag *to* their recipient, one per direction: a daemon watches only the tags of
what is sent to it, and an envelope under one that opens in none of its sessions
really is from the contact (docs/sessions.md §10, "We lost ours").

Tags rotate every EPOCH seconds, so a relay cannot link traffic across epochs
unless it knows the address; once two contacts share a secret, not even
someone who knows both addresses can tell their envelopes apart from others.
Announcements and room messages use their own tags and keys, derived from the
address and from the room name.
"""

from __future__ import annotations

from typing import Final

from bridge.core import crypto
from bridge.core.checks import MAX_CLOCK_SKEW, MAX_TTL

EPOCH: Final = 24 * 3600
TAG_SIZE: Final = 16
SHARD_KEY_SIZE: Final = 2


def epoch_of(t: int) -> int:
    return t // EPOCH


def _e(epoch: int) -> bytes:
    return epoch.to_bytes(8, "big")


def shard_key(pub: bytes) -> bytes:
    """The 16 bits that put a recipient's version-2 envelopes in its shard: an address's
    Ed25519 public key, or a room's X25519 public key."""
    return crypto.derive(crypto.CTX_SHARD_KEY, pub, SHARD_KEY_SIZE)


def _v2(pub: bytes, tag: bytes) -> bytes:
    return shard_key(pub) + tag[: TAG_SIZE - SHARD_KEY_SIZE]


def address_tag(pub: bytes, epoch: int) -> bytes:
    return crypto.derive(crypto.CTX_RECIPIENT_TAG, pub + _e(epoch), TAG_SIZE)


def address_tag_v2(pub: bytes, epoch: int) -> bytes:
    return _v2(pub, address_tag(pub, epoch))


def pair_secret(my_x25519_secret: bytes, my_pub: bytes, their_pub: bytes) -> bytes:
    """Shared by two contacts; computable by each from its key and the other's address."""
    shared = crypto.x25519(my_x25519_secret, crypto.ed25519_to_x25519_public(their_pub))
    low, high = sorted((my_pub, their_pub))
    return crypto.derive(crypto.CTX_PAIR_SECRET, low + high + shared)


def pair_tag(secret: bytes, epoch: int) -> bytes:
    return crypto.derive(crypto.CTX_PAIR_TAG, secret + _e(epoch), TAG_SIZE)


def pair_tag_to(secret: bytes, recipient: bytes, epoch: int) -> bytes:
    """The tag of version-2 envelopes from one contact to the other (``recipient``),
    in the recipient's shard."""
    return _v2(recipient,
               crypto.derive(crypto.CTX_PAIR_TAG_TO, secret + recipient + _e(epoch), TAG_SIZE))


def announce_tag(pub: bytes, epoch: int) -> bytes:
    return crypto.derive(crypto.CTX_ANNOUNCE_TAG, pub + _e(epoch), TAG_SIZE)


def announce_tag_v2(pub: bytes, epoch: int) -> bytes:
    """Version-2 announcements of ``pub``, in its shard."""
    return _v2(pub, announce_tag(pub, epoch))


def announce_secret(pub: bytes) -> bytes:
    """X25519 secret every holder of the address can compute: announcements are
    readable by those who know the address, and by no relay that does not."""
    return crypto.derive(crypto.CTX_ANNOUNCE_KEY, pub)


def room_secret(name: str) -> bytes:
    """X25519 secret of a public room: anyone who knows the name can read it."""
    return crypto.derive(crypto.CTX_ROOM_KEY, name.encode("utf-8"))


def room_tag(room_public: bytes, epoch: int) -> bytes:
    return crypto.derive(crypto.CTX_ROOM_TAG, room_public + _e(epoch), TAG_SIZE)


def room_tag_v2(room_public: bytes, epoch: int) -> bytes:
    return _v2(room_public, room_tag(room_public, epoch))


def watch_epochs(now: int) -> range:
    """Epochs whose envelopes may still be alive (sent up to MAX_TTL ago)."""
    return range(epoch_of(now - MAX_TTL - MAX_CLOCK_SKEW), epoch_of(now + MAX_CLOCK_SKEW) + 1)
