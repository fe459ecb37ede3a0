"""Tor control-protocol parsing and the outbound rules, without a tor process."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.core.errors import RemoteProtocolError
from bridge.net import tor


def test_reply_lines():
    assert tor.parse_reply_line("250-ServiceID=abc") == (250, "-", "ServiceID=abc")
    assert tor.parse_reply_line("250 OK") == (250, " ", "OK")
    assert tor.parse_reply_line("250+data") == (250, "+", "data")
    for bad in ["", "25", "abc OK", "250xOK"]:
        with pytest.raises(RemoteProtocolError):
            tor.parse_reply_line(bad)


def test_protocolinfo():
    lines = [
        "PROTOCOLINFO 1",
        r'AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/run/tor/a \"b\"\\c"',
        'VERSION Tor="0.4.7.16"',
        "OK",
    ]
    methods, cookie, version = tor.parse_protocolinfo(lines)
    assert methods == {"COOKIE", "SAFECOOKIE"}
    assert cookie == Path('/var/run/tor/a "b"\\c')
    assert version == "0.4.7.16"


def test_quote():
    assert tor.quote('pa"ss\\') == '"pa\\"ss\\\\"'
    with pytest.raises(ValueError):
        tor.quote("a\r\nSIGNAL SHUTDOWN")


def test_onion_needs_tor():
    tor.check_dial_host("example.org", tor=False)
    tor.check_dial_host("x" * 56 + ".onion", tor=True)
    with pytest.raises(tor.OnionWithoutTorError, match="enable Tor"):
        tor.check_dial_host("x" * 56 + ".ONION.", tor=False)


def test_onion_service_urls():
    o = tor.OnionService("a" * 56, 45069, "127.0.0.1", 8080)
    assert o.address == "a" * 56 + ".onion"
    assert o.url == "http://" + "a" * 56 + ".onion:45069"
