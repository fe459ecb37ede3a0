"""Vanity prefixes: validation messages and the pure search."""

from __future__ import annotations

import os

import pytest

from bridge.core import vanity
from bridge.core.errors import UserError
from bridge.core.identity import Identity


@pytest.mark.parametrize(("prefix", "message"), [
    ("", "at least one character"),
    ("ab1", "'1' cannot appear"),
    ("hello0", "use o, l, b and g"),
    ("a-b", "'-'"),
    ("a" * 13, "choose 12 or fewer"),
])
def test_invalid_prefixes_have_clear_messages(prefix: str, message: str) -> None:
    with pytest.raises(vanity.VanityPrefixError, match=message) as info:
        vanity.normalize_prefix(prefix)
    assert isinstance(info.value, UserError)


def test_prefix_is_normalized() -> None:
    assert vanity.normalize_prefix("  AbC ") == "abc"


def test_infeasible_prefix_refused_with_estimate() -> None:
    assert vanity.check_feasible("ab", 50_000) < 1
    with pytest.raises(vanity.VanityPrefixError, match="years"):
        vanity.check_feasible("abcdefghij", 50_000)


def test_search_finds_a_matching_key() -> None:
    base = os.urandom(24)
    seed = vanity.search_range("a", base, 0, 10_000)
    assert seed is not None
    assert Identity.from_seed(seed).address.startswith("a")
    assert seed[:24] == base


def test_prefix_matches_agrees_with_address() -> None:
    for i in range(200):
        ident = Identity.from_seed(i.to_bytes(32, "big"))
        for k in (1, 3, 8, 9):
            assert vanity.prefix_matches(ident.public, ident.address[:k])
            other = "a" if ident.address[0] != "a" else "b"
            assert not vanity.prefix_matches(ident.public, other + ident.address[1:k])
