"""Factories for valid envelopes in tests, built with the protocol core itself."""

from __future__ import annotations

import os

from bridge.core import tags
from bridge.core.checks import stamp_inline
from bridge.core.envelope import Kind
from bridge.core.identity import Identity
from bridge.core.records import DirectMessage
from bridge.core.seal import seal


def identity(n: int | None = None) -> Identity:
    seed = os.urandom(32) if n is None else n.to_bytes(32, "big")
    return Identity.from_seed(seed)


def make_envelope(
    *,
    now: int,
    ttl: int = 3600,
    base_bits: int = 4,
    text: str = "hello",
    sender: Identity | None = None,
    recipient: Identity | None = None,
    ephemeral_secret: bytes | None = None,
) -> bytes:
    """A sealed, PoW-stamped direct message valid at ``now`` for ``base_bits``."""
    sender = sender or identity()
    recipient = recipient or identity()
    raw = seal(
        sender_secret_key=sender.secret_key,
        sender=sender.public,
        recipient=recipient.public,
        kex_public=recipient.x25519_public,
        kind=Kind.DIRECT,
        tag=tags.address_tag(recipient.public, tags.epoch_of(now)),
        expiry=now + ttl,
        payload=DirectMessage(now * 1000, text).encode(),
        ephemeral_secret=ephemeral_secret or os.urandom(32),
    )
    return stamp_inline(raw, now=now, base_bits=base_bits)
