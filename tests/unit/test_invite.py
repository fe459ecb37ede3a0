"""Invitation links: round trip and a reason for every refusal."""

from __future__ import annotations

import pytest

from bridge.core.errors import BadInviteError, UserError
from bridge.core.identity import Identity
from bridge.core.invite import Invite, encode_invite, parse_invite

PUB = Identity.from_seed(b"I" * 32).public


def test_round_trip_with_nick_and_peers() -> None:
    inv = Invite(PUB, "Alice & Bob=friends", ("127.0.0.1:7000", "abc.onion:45069"))
    link = encode_invite(inv)
    assert link.startswith("paranoim:1/")
    assert parse_invite(link) == inv
    assert parse_invite(f"  {link}\n") == inv


def test_bare_address_is_an_invite() -> None:
    inv = Invite(PUB)
    assert parse_invite(inv.address) == inv
    assert parse_invite(encode_invite(inv)) == inv


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda s: s[:-1], "checksum does not match"),
    (lambda s: s.replace("nick=Al", "nick=Bl"), "checksum does not match"),
    (lambda s: s.split("&c=")[0], "no checksum"),
    (lambda s: "hello", "neither a ParanoIM link"),
    (lambda s: s.replace("paranoim:1/", "paranoim:2/"), "checksum"),
    (lambda s: s + "x" * 3000, "at most"),
])
def test_mistyped_links_are_refused_with_a_reason(mutate, reason: str) -> None:
    link = encode_invite(Invite(PUB, "Alice", ("127.0.0.1:7000",)))
    with pytest.raises(BadInviteError, match=reason) as info:
        parse_invite(mutate(link))
    assert isinstance(info.value, UserError)


def test_bad_peer_refused() -> None:
    with pytest.raises(BadInviteError, match="host:port"):
        encode_invite(Invite(PUB, "", ("nohost",)))


def test_peers_stay_readable_and_odd_nicks_round_trip() -> None:
    inv = Invite(PUB, "Al:ce & Bob=1", ("127.0.0.1:4000", "[::1]:5"))
    link = encode_invite(inv)
    assert "peer=127.0.0.1:4000" in link and "%3A" not in link
    assert parse_invite(link) == inv
