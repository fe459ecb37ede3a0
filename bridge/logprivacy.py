"""What the log may say about others: at the default level, nothing that names a peer
or a single message.

The log goes to stderr, and under ``paranoim service install`` into journald, on
disk. Log calls that concern one peer or one message are at DEBUG; this module
is the net behind them: ``PrivateFormatter`` blanks, in every record above DEBUG
(exception texts included), IP addresses and ports, host:port pairs, URLs,
onion names, P2P addresses, hex ids (envelope ids, tags, keys) and ``token=``
values. ``--log-level debug`` shows everything, for a person who asks for it.
"""

from __future__ import annotations

import logging
import re

# Order matters: a URL is blanked whole before its host could match on its own.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"token=[^\s&'\"]+"), "token=[secret]"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I), "[url]"),
    (re.compile(r"\b[a-z2-7]{56}(?:\.onion)?(?::\d{1,5})?\b"), "[address]"),
    (re.compile(r"\[[0-9a-f:.%\w]*:[0-9a-f:.%\w]*\](?::\d{1,5})?", re.I), "[address]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "[address]"),
    (re.compile(r"(?<![\w:])(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})[0-9a-f:]{2,39}"
                r"(?![\w:])", re.I), "[address]"),
    (re.compile(r"\b(?:[a-z0-9-]+\.)+[a-z][a-z0-9-]*:\d{1,5}\b", re.I), "[address]"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.I), "[id]"),
)


def redact(text: str) -> str:
    """``text`` without peer addresses, message ids or tokens."""
    for pattern, blank in _PATTERNS:
        text = pattern.sub(blank, text)
    return text


class PrivateFormatter(logging.Formatter):
    """Formats as usual, then blanks what ``redact`` blanks unless the root logs DEBUG."""

    def format(self, record: logging.LogRecord) -> str:
        if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
            return super().format(record)
        clean = logging.makeLogRecord(record.__dict__)
        clean.msg, clean.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            clean.exc_text = self.formatException(record.exc_info)
        clean.exc_info = None
        if clean.exc_text:
            clean.exc_text = redact(clean.exc_text)
        if clean.stack_info:
            clean.stack_info = redact(clean.stack_info)
        return super().format(clean)
