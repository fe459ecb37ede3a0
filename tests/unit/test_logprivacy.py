"""The log formatter blanks peers, message ids and tokens above DEBUG, and only there."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from bridge.logprivacy import PrivateFormatter, redact

SECRETS = [
    ("peer 203.0.113.9:45069 linked", "203.0.113.9"),
    ("to http://192.0.2.7:45069/msg failed", "192.0.2.7"),
    ("from [2001:db8::7]:45069", "2001:db8::7"),
    ("from 2001:db8::7 and fe80::1", "fe80::1"),
    ("dial node.example.org:45069", "node.example.org"),
    (f"onion {'a' * 56}.onion:80", "a" * 56),
    ("envelope 0123456789ab refused", "0123456789ab"),
    ("open http://127.0.0.1:8765/?token=Jq8secret", "Jq8secret"),
    ("token=Jq8secret&x=1", "Jq8secret"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_redact_blanks_what_names_a_peer_or_message(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_keeps_plain_words_and_numbers() -> None:
    for text in ("ready in 0.52 s", "12 peers, 3 envelopes", "stream error: bad-format",
                 "at 12:30:45"):
        assert redact(text) == text


@pytest.fixture
def root_level() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    before = root.level
    yield root
    root.setLevel(before)


def test_formatter_redacts_above_debug_only(root_level: logging.Logger) -> None:
    fmt = PrivateFormatter("%(levelname)s %(message)s")
    try:
        raise OSError("connect to 198.51.100.4:45069 refused")
    except OSError:
        exc = sys.exc_info()
    record = logging.LogRecord("bridge.x", logging.WARNING, __file__, 1,
                               "peer %s: envelope %s", ("198.51.100.4:45069", "ab" * 8), exc)
    root_level.setLevel(logging.INFO)
    shown = fmt.format(record)
    assert "198.51.100.4" not in shown and "ab" * 8 not in shown
    assert shown.startswith("WARNING peer [address]: envelope [id]") and "OSError" in shown
    root_level.setLevel(logging.DEBUG)
    record.exc_text = None
    assert "198.51.100.4:45069" in PrivateFormatter("%(message)s").format(record)
