"""XMPP stream errors (RFC 6120 §4.9): the one exception that ends a stream.

Everything that must cut a connection off — hostile XML, a size limit, a
timeout, a protocol violation during negotiation — raises ``StreamError`` with
the RFC condition name; the connection shell turns it into
``<stream:error>`` and closes. Stanza-level errors live in ``errors.py``.
"""

from __future__ import annotations

from typing import Final

STREAMS_NS: Final = "urn:ietf:params:xml:ns:xmpp-streams"

# The conditions of RFC 6120 §4.9.3 that this server sends; a typo in a
# condition name would put a bogus element on the wire, so the constructor
# checks against this set.
CONDITIONS: Final = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-unknown",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "resource-constraint",
        "restricted-xml",
        "system-shutdown",
        "undefined-condition",  # XEP-0198: an acknowledgement of more than was sent
        "unsupported-encoding",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)


class StreamError(Exception):
    """End the stream with ``condition``; ``text`` is shown to the person (English)."""

    def __init__(self, condition: str, text: str = "") -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown stream error condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
