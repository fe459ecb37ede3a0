"""XEP-0198 stream management on the embedded listener: acknowledgements and resumption.

A client that sends ``<enable xmlns='urn:xmpp:sm:3'/>`` after binding has every
stanza it is sent counted and kept until it acknowledges it (``<a h=…/>``, asked for
with ``<r/>`` once per burst), and every stanza it sends counted for its own
``<r/>``. Sent with ``resume='true'``, the session outlives its TCP connection for
``RESUME_TIMEOUT`` seconds: it stays available, what the network sends it is queued,
and a new connection of the same identity that presents its id (``<resume previd
h/>``, after SASL, instead of binding) takes it over, is told how much was received,
and gets again everything not acknowledged.

What "delivered" means: a chat message written to a client with stream management
counts as shown (``ServiceAPI.delivered``, the never-show-again record) only when
that client acknowledges it; one written to a client without it counts at the write,
as before. When a session ends with messages unacknowledged (closed, not resumed in
time, or dropped for a full queue), they are offered again to the identity's clients
online then, or wait for its next one (``delivery.py``).

Bounds: at most ``MAX_UNACKED`` stanzas and ``MAX_UNACKED_BYTES`` unacknowledged per
session (past either the session ends with ``resource-constraint``); at most
``MAX_WAITING_PER_IDENTITY`` sessions of one identity and ``MAX_WAITING`` in all wait
to be resumed (past either the oldest waiting one ends). An acknowledgement of more
than was sent is a stream error, not a guess.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bridge.xmpp import stanzas as st
from bridge.xmpp.streamerror import StreamError

if TYPE_CHECKING:
    from bridge.xmpp.stream import C2SConnection

SM_NS: Final = "urn:xmpp:sm:3"
STANZAS_NS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
RESUME_TIMEOUT: Final = 300  # seconds a dropped session waits to be resumed
MAX_UNACKED: Final = 1000  # stanzas sent and not acknowledged, per session
MAX_UNACKED_BYTES: Final = 4 * 1024 * 1024
MAX_WAITING_PER_IDENTITY: Final = 8  # dropped sessions waiting to be resumed
MAX_WAITING: Final = 256
_MOD: Final = 1 << 32  # h counts wrap at 2^32 (XEP-0198 §4)
REQUEST: Final = f"<r xmlns='{SM_NS}'/>".encode()

Confirm = Callable[[bool], None]
"""Told True when the client acknowledged a stanza, False when its session ended first."""


def tag(name: str) -> str:
    return f"{{{SM_NS}}}{name}"


def parse_h(value: str | None) -> int:
    """An ``h`` attribute: an unsigned 32-bit count; a stream error for anything else."""
    if value is None or not value.isdigit() or len(value) > 10 or int(value) >= _MOD:
        raise StreamError("bad-format", f"h must be a count from 0 to {_MOD - 1}")
    return int(value)


def element(name: str, **attrs: str) -> bytes:
    return st.serialize(ET.Element(tag(name), attrs))


def failed(condition: str, text: str = "") -> bytes:
    el = ET.Element(tag("failed"))
    ET.SubElement(el, f"{{{STANZAS_NS}}}{condition}")
    if text:
        ET.SubElement(el, f"{{{STANZAS_NS}}}text").text = text
    return st.serialize(el)


@dataclass(slots=True)
class _Unacked:
    data: bytes
    confirm: Confirm | None


class StreamState:
    """One session's counts and the stanzas it has not acknowledged yet."""

    def __init__(self, resumable: bool) -> None:
        self.id = secrets.token_urlsafe(18) if resumable else ""
        self.resumable = resumable
        self.handled = 0  # stanzas received from the client (its <a h/>)
        self.acked = 0  # stanzas the client acknowledged, mod 2^32
        self.queue: deque[_Unacked] = deque()
        self.bytes = 0
        self.asked = False  # an <r/> is on its way and not answered

    def track(self, data: bytes, confirm: Confirm | None) -> bool:
        """Keep a stanza until acknowledged; False once past the bounds."""
        self.queue.append(_Unacked(data, confirm))
        self.bytes += len(data)
        return len(self.queue) <= MAX_UNACKED and self.bytes <= MAX_UNACKED_BYTES

    def received(self) -> None:
        self.handled = (self.handled + 1) % _MOD

    def ack(self, h: int) -> None:
        """The client has handled ``h`` stanzas (mod 2^32): drop and confirm those."""
        self.asked = False
        count = (h - self.acked) % _MOD
        if count > len(self.queue):
            raise StreamError("undefined-condition",
                              f"handled-count-too-high: h={h} but only "
                              f"{(self.acked + len(self.queue)) % _MOD} stanzas were sent")
        self.acked = h
        for _ in range(count):
            done = self.queue.popleft()
            self.bytes -= len(done.data)
            if done.confirm is not None:
                done.confirm(True)

    def want_ack(self) -> bool:
        """Ask with <r/>? Once per burst, when something is unacknowledged."""
        if self.queue and not self.asked:
            self.asked = True
            return True
        return False

    def fail_all(self) -> None:
        """The session is over: nothing left will be acknowledged."""
        queue, self.queue, self.bytes = self.queue, deque(), 0
        for done in queue:
            if done.confirm is not None:
                done.confirm(False)


def handle(conn: C2SConnection, el: ET.Element, resumable: Resumable) -> None:
    """An SM element other than a resume after SASL (``stream.py`` does that one)."""
    name = el.tag[len(SM_NS) + 2:]
    state = conn.sm
    if name == "enable":
        if conn.owner is None or not conn.jid.resource or state is not None:
            conn.write_nonza(failed("unexpected-request", "enable once, after binding"))
            return
        want = el.get("resume", "").lower() in ("true", "1")
        conn.sm = state = StreamState(want)
        attrs = {"id": state.id, "resume": "true",
                 "max": str(int(resumable.timeout))} if want else {}
        if want:
            resumable.enabled(conn)
        conn.write_nonza(element("enabled", **attrs))
    elif name == "r" and state is not None:
        conn.write_nonza(element("a", h=str(state.handled)))
    elif name == "a" and state is not None:
        state.ack(parse_h(el.get("h")))
    elif name in ("r", "a", "resume"):
        conn.write_nonza(failed("unexpected-request", f"<{name}/> needs stream management "
                                "enabled on this stream" if name != "resume" else
                                "resume instead of binding, right after authenticating"))
    else:
        raise StreamError("unsupported-stanza-type", f"unexpected element <{name[:40]}/>")


class Resumable:
    """The server's sessions that may be resumed, connected or waiting after a drop."""

    def __init__(self, end: Callable[[C2SConnection], None],
                 timeout: float = RESUME_TIMEOUT, per_identity: int = MAX_WAITING_PER_IDENTITY,
                 total: int = MAX_WAITING) -> None:
        self.end = end  # ends a session for good (the server's end_session)
        self.timeout, self.per_identity, self.total = timeout, per_identity, total
        self._live: dict[str, C2SConnection] = {}
        self._waiting: OrderedDict[str, tuple[C2SConnection, asyncio.TimerHandle]] = (
            OrderedDict())

    def __len__(self) -> int:
        return len(self._waiting)

    def enabled(self, conn: C2SConnection) -> None:
        assert conn.sm is not None
        self._live[conn.sm.id] = conn

    def hibernate(self, conn: C2SConnection) -> bool:
        """The connection dropped: keep the session for a resume (False if it cannot
        be resumed)."""
        state = conn.sm
        if state is None or not state.resumable or self._live.pop(state.id, None) is not conn:
            return False
        owner = conn.owner.address if conn.owner else ""
        mine = [c for c, _ in self._waiting.values() if c.owner and c.owner.address == owner]
        while mine and len(mine) >= self.per_identity:
            self.end(mine.pop(0))
        while len(self._waiting) >= self.total:
            self.end(next(iter(self._waiting.values()))[0])
        timer = asyncio.get_running_loop().call_later(self.timeout, self.end, conn)
        self._waiting[state.id] = (conn, timer)
        return True

    def take(self, previd: str, owner: str) -> C2SConnection | None:
        """The session ``previd`` names, if it is ``owner``'s; it is no longer waiting."""
        found = self._waiting.get(previd)
        conn = found[0] if found else self._live.get(previd)
        if conn is None or conn.owner is None or conn.owner.address != owner:
            return None
        self.forget(conn)
        return conn

    def forget(self, conn: C2SConnection) -> None:
        state = conn.sm
        if state is None or not state.id:
            return
        if self._live.get(state.id) is conn:
            del self._live[state.id]
        found = self._waiting.get(state.id)
        if found is not None and found[0] is conn:
            found[1].cancel()
            del self._waiting[state.id]

    def waiting(self) -> list[C2SConnection]:
        return [conn for conn, _ in self._waiting.values()]


__all__ = ["REQUEST", "SM_NS", "Confirm", "Resumable", "StreamState", "element", "failed",
           "handle", "parse_h", "tag"]
