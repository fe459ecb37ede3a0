"""Vanity addresses: keys whose address begins with a chosen prefix.

The address starts with base32 of the public key, so a k-character prefix
fixes 5·k bits of the key and takes 32**k tries on average. The search is pure
and bounded (``search_range``) so worker processes can run ranges side by side
and be stopped between them. Seeds are a secret 24-byte base plus a counter:
every seed is as unguessable as the base.
"""

from __future__ import annotations

import base64
from typing import Final

import nacl.bindings as sodium

from bridge.core.address import BASE32_ALPHABET
from bridge.core.errors import UserError

MAX_PREFIX: Final = 12  # beyond this even a large estimate is meaningless
MAX_EXPECTED_SECONDS: Final = 30 * 24 * 3600  # refuse searches expected to exceed 30 days


class VanityPrefixError(UserError):
    """A prefix that cannot (or should not) be searched for."""


def normalize_prefix(prefix: str) -> str:
    """The prefix as it will appear in the address, or a VanityPrefixError saying why not."""
    p = prefix.strip().lower()
    if not p:
        raise VanityPrefixError("type at least one character for the address to start with")
    bad = sorted({c for c in p if c not in BASE32_ALPHABET})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        hint = " (0, 1, 8 and 9 never appear: use o, l, b and g)" if set(bad) & set("0189") else ""
        raise VanityPrefixError(
            f"addresses use only the letters a-z and digits 2-7; {shown} cannot appear{hint}"
        )
    if len(p) > MAX_PREFIX:
        raise VanityPrefixError(
            f"a prefix of {len(p)} characters would take longer than the universe has existed; "
            f"choose {MAX_PREFIX} or fewer (5 or 6 are practical)"
        )
    return p


def expected_attempts(prefix: str) -> float:
    return float(32 ** len(prefix))


def check_feasible(prefix: str, keys_per_second: float) -> float:
    """Expected seconds for ``prefix`` at the given rate; refuse if beyond the limit."""
    p = normalize_prefix(prefix)
    seconds = expected_attempts(p) / max(keys_per_second, 1.0)
    if seconds > MAX_EXPECTED_SECONDS:
        raise VanityPrefixError(
            f"'{p}' would take about {describe_duration(seconds)} on this machine; "
            f"choose a shorter prefix (each character multiplies the time by 32)"
        )
    return seconds


def describe_duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600),
                       ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} seconds"


def prefix_matches(pub: bytes, prefix: str) -> bool:
    nbytes = 5 * (-(-len(prefix) // 8))
    return base64.b32encode(pub[:nbytes]).decode("ascii").lower().startswith(prefix)


def seed_at(base: bytes, index: int) -> bytes:
    if len(base) != 24:
        raise ValueError("vanity base must be 24 bytes")
    return base + index.to_bytes(8, "big")


def search_range(prefix: str, base: bytes, start: int, count: int) -> bytes | None:
    """The first seed in [start, start+count) whose address starts with ``prefix``."""
    nbytes = 5 * (-(-len(prefix) // 8))
    want = prefix.upper().encode("ascii")
    b32 = base64.b32encode
    keypair = sodium.crypto_sign_seed_keypair
    for i in range(start, start + count):
        seed = base + i.to_bytes(8, "big")
        pub = keypair(seed)[0]
        if b32(pub[:nbytes]).startswith(want):
            return seed
    return None
