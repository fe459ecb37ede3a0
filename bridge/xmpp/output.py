"""Output of a client connection: stanzas counted for XEP-0198, one write per loop turn.

``C2SConnection`` (``stream.py``) gets its output from here. Stanzas go through
``send``/``write``: with stream management on (``sm.py``) each is kept until the
client acknowledges it and ``confirm`` is told when it does (or when the session
ends first); without it ``confirm`` is told at the write, as a client without
acknowledgements can tell nothing more. Everything written within one turn of the
event loop leaves as one write, followed by one ``<r/>`` when acknowledgements are
owed; a client that stops reading is cut off past ``MAX_WRITE_BUFFER``.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp.xmlstream import ElementBase

from bridge.xmpp import stanzas as st
from bridge.xmpp.phases import Phase
from bridge.xmpp.sm import REQUEST, Confirm, StreamState
from bridge.xmpp.streamerror import StreamError

if TYPE_CHECKING:
    from bridge.xmpp.stream import C2SConnection, Hub

log = logging.getLogger(__name__)

MAX_WRITE_BUFFER = 4 * 1024 * 1024  # a client that stops reading is cut off here


class Output:
    hub: Hub
    phase: Phase
    transport: asyncio.Transport | None
    source: str
    sm: StreamState | None
    successor: C2SConnection | None
    _out: list[bytes]

    def _fail(self, err: StreamError, resumable: bool = False) -> None:
        raise NotImplementedError

    def _drop(self, graceful: bool = False, resumable: bool = False) -> None:
        raise NotImplementedError

    def send(self, stanza: ElementBase | ET.Element, confirm: Confirm | None = None) -> None:
        self.write(st.serialize(stanza), confirm)

    def write(self, data: bytes, confirm: Confirm | None = None) -> None:
        """One stanza already serialised (``stanzas.chat_message``). ``confirm`` is told
        whether the client got it: at once without stream management, on its
        acknowledgement (True) or the end of its session (False) with it."""
        if self.successor is not None:  # the session was resumed on another connection
            self.successor.write(data, confirm)
            return
        if self.sm is None:
            self._write(data)
            if confirm is not None:
                confirm(True)
            return
        if not self.sm.track(data, confirm):
            if self.phase is Phase.CLOSED:  # waiting to be resumed: it ends now
                self.hub.end_session(self)  # type: ignore[arg-type]
            else:
                self._fail(StreamError("resource-constraint",
                                       "too many stanzas not acknowledged"))
            return
        self._write(data)

    def write_nonza(self, data: bytes) -> None:
        """Stream-level output that is not a stanza (XEP-0198 elements): not counted."""
        self._write(data)

    def _write(self, data: bytes) -> None:
        """Queue ``data``; what is queued within one turn of the event loop goes out as
        one write (one TLS record and one system call for a burst of messages, not one
        per stanza). Flushed at the end of the turn, and before STARTTLS and closing."""
        transport = self.transport
        if transport is None or self.phase is Phase.CLOSED or transport.is_closing():
            return
        if self._out:
            self._out.append(data)
            return
        self._out = [data]
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self.transport
        if not out or transport is None or transport.is_closing():
            return
        if self.sm is not None and self.phase is Phase.BOUND and self.sm.want_ack():
            out.append(REQUEST)
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.info("%s is not reading; dropping the connection", self.source)
            transport.abort()
            self._drop(resumable=True)
