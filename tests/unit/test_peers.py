"""The one peer-address parser: what it accepts, its canonical form, what it refuses."""

from __future__ import annotations

import pytest

from bridge.core.errors import BadPeerError, UserError
from bridge.core.peers import is_loopback_host, is_onion, parse_peer, peer_host


@pytest.mark.parametrize(("text", "canonical"), [
    ("192.0.2.7:45069", "192.0.2.7:45069"),
    ("  Node.Example.ORG:0080 ", "node.example.org:80"),
    ("example.org.:1", "example.org:1"),
    ("[2001:DB8:0::7]:9", "[2001:db8::7]:9"),
    ("abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.onion:45069",
     "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.onion:45069"),
    ("localhost:65535", "localhost:65535"),
])
def test_accepted_and_canonical(text: str, canonical: str) -> None:
    assert parse_peer(text) == canonical
    assert parse_peer(canonical) == canonical


@pytest.mark.parametrize(("text", "words"), [
    ("192.0.2.7", "host:port"),
    (":45069", "host:port"),
    ("x.org:0", "from 1 to 65535"),
    ("x.org:65536", "from 1 to 65535"),
    ("x.org:+5", "from 1 to 65535"),
    ("x.org:١٢", "from 1 to 65535"),
    ("bad_name:1", "host name"),
    ("a b:1", "host name"),
    ("bücher.de:1", "host name"),
    ("http://x.org:1", "not a URL"),
    ("user@x.org:1", "not a URL"),
    ("2001:db8::7:9", "in brackets"),
    ("[nonsense]:9", "not an IPv6 address"),
    ("a" * 300 + ":1", "too long"),
])
def test_refused_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(BadPeerError, match=words) as info:
        parse_peer(text)
    assert isinstance(info.value, UserError)
    assert "host:port" in str(info.value)


def test_host_helpers() -> None:
    assert peer_host("[2001:db8::7]:9") == "2001:db8::7"
    assert is_onion(parse_peer("abc.onion:1")) and not is_onion("abc.org:1")


def test_loopback_hosts() -> None:
    for host in ("localhost", "LocalHost.", "127.0.0.1", "127.8.9.10", "::1", "[::1]"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "192.0.2.7", "[2001:db8::1]", "localhost.example", "", "::"):
        assert not is_loopback_host(host), host
