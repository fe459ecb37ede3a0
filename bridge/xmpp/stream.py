"""One client connection: stream negotiation up to a bound (or resumed) session.

Owns the byte-level life of a c2s connection: direct-TLS sniffing, the pump
from bytes to events to handlers, STARTTLS, timeouts and stream errors; its
output (one write per loop turn, XEP-0198 counting) is ``output.py``. The
decisions are made elsewhere, without I/O: what each phase accepts and offers
in ``phases.py``, the SASL exchange and its throttling in ``login.py``, the
bound JID in ``binding.py``, XEP-0198 in ``sm.py``; this module acts on what
they return. Once the resource is bound (or a session resumed in its place)
every stanza goes to ``hub.route``; this module never looks inside messages,
presences or non-negotiation IQs. A lost connection whose session may be
resumed is handed to ``hub.gone(conn, resumable=True)``; ``<resume/>`` takes
such a session over from the old connection (``_resume``).

Pitfalls handled here, found by running real clients (Pidgin, Gajim,
profanity, poezio, slixmpp) against the listener: reading is paused from
``<proceed/>`` until TLS is up, bytes the TLS layer delivers before
``start_tls`` returns are queued and replayed, and the XML reader is reset
after TLS and after SASL success. Plaintext that follows ``<starttls/>`` is
discarded (RFC 6120 §5.4.3.3, the STARTTLS command-injection attack).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from slixmpp import JID

from bridge.events import IdentityInfo
from bridge.xmpp import sm
from bridge.xmpp import stanzas as st
from bridge.xmpp.binding import (
    bind_refused,
    bind_request,
    bind_result,
    is_session_request,
    resource_jid,
    session_result,
    stamp_from,
)
from bridge.xmpp.login import Login, LoginFailed, LoginHub, Reply
from bridge.xmpp.output import MAX_WRITE_BUFFER, Output
from bridge.xmpp.phases import ACCEPTS, Phase, check_stream_open, features, refusal
from bridge.xmpp.reader import Limits, StanzaReceived, StreamClosed, StreamOpened, StreamReader
from bridge.xmpp.streamerror import StreamError
from bridge.xmpp.tls import tls_failure

__all__ = ["MAX_WRITE_BUFFER", "C2SConnection", "Hub", "Phase", "Timeouts", "tls_failure"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timeouts:
    pre_auth: float = 60.0  # seconds without a complete stanza before binding
    idle: float = 900.0  # after binding; clients send whitespace or pings every 5 min
    tls_handshake: float = 30.0


class Hub(LoginHub, Protocol):
    """What a connection needs from the server that owns it."""

    limits: Limits
    timeouts: Timeouts
    ssl_context: ssl.SSLContext
    resumable: sm.Resumable

    def bind(self, conn: C2SConnection) -> None: ...
    def route(self, conn: C2SConnection, el: ET.Element) -> None: ...
    def gone(self, conn: C2SConnection, resumable: bool = False) -> None: ...
    def end_session(self, conn: C2SConnection) -> None: ...


class C2SConnection(Output, asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.hub: Hub = hub
        self.phase = Phase.PLAIN
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self._xml = StreamReader(hub.limits)
        self._inbox: deque[bytes] = deque()
        self._out: list[bytes] = []  # written this loop turn, not yet flushed
        self._events: deque[StreamOpened | StanzaReceived | StreamClosed] = deque()
        self._busy: asyncio.Task[None] | None = None
        self._first_byte = True
        self._header_sent = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_progress = 0.0
        self._login = Login(hub)
        # set once authenticated / bound; read by the gateway
        self.owner: IdentityInfo | None = None
        self.jid = JID()
        self.available = False
        self.carbons = False
        self.roster_requested = False
        self.rooms: dict[str, str] = {}  # room JID -> our nick in it
        self.room_seen: dict[str, set[str]] = {}  # room JID -> occupant nicks announced
        self.sm: sm.StreamState | None = None  # XEP-0198, once enabled
        self.successor: C2SConnection | None = None  # where a resumed session went

    # --- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if peer else "?"
        self._last_progress = asyncio.get_running_loop().time()
        self._arm_timer(self.hub.timeouts.pre_auth)

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.CLOSED:
            return
        if self._first_byte and data:
            self._first_byte = False
            if data[0] == 0x16:  # a TLS ClientHello: a direct-TLS client (slixmpp tries it first)
                log.debug("direct TLS attempt from %s closed", self.source)
                self._drop()
                return
        self._inbox.append(data)
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop(resumable=True)

    # --- what the gateway uses --------------------------------------------------

    @property
    def bare(self) -> str:
        return self.jid.bare

    def close(self, err: StreamError | None = None) -> None:
        """End the stream, with an error if given (conflict, system-shutdown ...)."""
        if self.phase is Phase.CLOSED:
            if self.sm is not None:  # waiting to be resumed: that ends too
                self.hub.end_session(self)
            return
        if err is not None:
            self._fail(err)
            return
        self._write(st.STREAM_CLOSE)
        self._drop(graceful=True)

    # --- the pump: bytes -> events -> handlers, one at a time --------------------

    def _pump(self) -> None:
        while self._busy is None and self.phase is not Phase.CLOSED:
            if self._events:
                event = self._events.popleft()
                try:
                    waiting = self._handle(event)
                except StreamError as err:
                    self._fail(err)
                    return
                except Exception:  # a bug: this connection ends, never the listener
                    log.exception("error while handling a stanza from %s", self.source)
                    self._fail(StreamError("internal-server-error"))
                    return
                if waiting is not None:
                    self._wait_for(waiting)
            elif self._inbox:
                data = self._inbox.popleft()
                try:
                    self._events.extend(self._xml.feed(data))
                except StreamError as err:
                    self._fail(err)
                    return
                if self.phase is Phase.BOUND and self._xml.at_boundary:
                    self._progress()  # whitespace keepalives count once bound
            else:
                return

    def _wait_for(self, waiting: Awaitable[None]) -> None:
        """Stop handling input until ``waiting`` is done (TLS, a login delay)."""
        assert self.transport is not None
        self.transport.pause_reading()
        self._busy = asyncio.ensure_future(self._finish(waiting))

    async def _finish(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except StreamError as err:
            self._busy = None
            self._fail(err)
            return
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            log.info("TLS with %s failed: %s", self.source, tls_failure(exc))
            self._busy = None
            self._drop()
            return
        except asyncio.CancelledError:
            self._busy = None
            raise
        except Exception:
            log.exception("error while negotiating with %s", self.source)
            self._busy = None
            self._fail(StreamError("internal-server-error"))
            return
        self._busy = None
        if self.phase is not Phase.CLOSED and self.transport is not None:
            self.transport.resume_reading()
            self._pump()

    # --- events ------------------------------------------------------------------

    def _handle(
        self, event: StreamOpened | StanzaReceived | StreamClosed
    ) -> Awaitable[None] | None:
        if isinstance(event, StreamOpened):
            self._progress()
            self._open(event)
            return None
        if isinstance(event, StreamClosed):
            self.close()
            return None
        self._progress()
        el = event.element
        if el.tag not in ACCEPTS[self.phase]:
            raise refusal(self.phase, el.tag)
        if self.phase is Phase.PLAIN:
            return self._starttls()
        if self.phase is Phase.TLS:
            return self._sasl(el)
        if el.tag == sm.tag("resume") and self.phase is Phase.AUTHED:
            self._resume(el)
        elif el.tag.startswith(f"{{{sm.SM_NS}}}"):
            sm.handle(self, el, self.hub.resumable)
        elif self.phase is Phase.AUTHED:
            self._negotiate_iq(el)
        else:
            self._stanza(el)
            if self.sm is not None:
                self.sm.received()
        return None

    def _open(self, event: StreamOpened) -> None:
        domain = self.hub.domains.server
        self._write(st.stream_header(domain, secrets.token_hex(8)))
        self._header_sent = True
        check_stream_open(event, domain)
        self._write(features(self.phase))

    # --- STARTTLS ------------------------------------------------------------------

    def _starttls(self) -> Awaitable[None]:
        self._write(st.serialize(st.element(f"{{{st.TLS_NS}}}proceed")))
        # Anything already received after <starttls/> was sent in plaintext and
        # must not be taken as coming from inside TLS.
        self._inbox.clear()
        self._events.clear()
        return self._upgrade()

    async def _upgrade(self) -> None:
        assert self.transport is not None
        self._flush()  # <proceed/> goes out in plaintext, before the handshake
        loop = asyncio.get_running_loop()
        new_transport = await loop.start_tls(
            self.transport,
            self,
            self.hub.ssl_context,
            server_side=True,
            ssl_handshake_timeout=self.hub.timeouts.tls_handshake,
        )
        if new_transport is None:
            raise OSError("connection closed during the TLS handshake")
        self.transport = new_transport
        self.phase = Phase.TLS
        self._xml.reset()
        self._header_sent = False

    # --- SASL (login.py) -------------------------------------------------------------

    def _sasl(self, el: ET.Element) -> Awaitable[None] | None:
        step = self._login.receive(el, self.source)
        if isinstance(step, LoginFailed):
            log.info("failed login for %r from %s", step.user, self.source)
            return self._login_failed(step)
        if isinstance(step, Reply):
            self._write(step.data)
            return None
        self.owner = step.identity
        self._write(step.data)
        self.phase = Phase.AUTHED
        self._xml.reset()  # the client opens a new stream now
        self._events.clear()
        self._header_sent = False
        log.info("%s logged in from %s", step.identity.username, self.source)
        return None

    async def _login_failed(self, step: LoginFailed) -> None:
        if step.delay:
            await asyncio.sleep(step.delay)
        self._write(step.data)
        if step.fatal:
            raise StreamError("policy-violation", "too many failed login attempts")

    # --- bind and session (binding.py) --------------------------------------------------

    def _negotiate_iq(self, el: ET.Element) -> None:
        bind = bind_request(el)
        if bind is not None:
            self._bind(el, bind)
        elif el.get("type") == "set" and is_session_request(el):
            self.send(session_result(el))
        else:
            raise StreamError("not-authorized", "bind a resource first")

    def _bind(self, iq: ET.Element, bind: ET.Element) -> None:
        assert self.owner is not None
        jid = resource_jid(self.hub.domains.user(self.owner.username), bind)
        if jid is None:
            self.send(bind_refused(iq))
            return
        self.jid = jid
        self.phase = Phase.BOUND
        self.hub.bind(self)  # may end an older connection that had this resource
        self.send(bind_result(iq, jid))
        self._arm_timer(self.hub.timeouts.idle)

    # --- XEP-0198 resumption (sm.py) ---------------------------------------------------

    def _resume(self, el: ET.Element) -> None:
        """Take over the session ``previd`` names: its JID, state and unacknowledged
        stanzas, which are sent again after ``<resumed/>``."""
        assert self.owner is not None
        h = sm.parse_h(el.get("h"))
        old = self.hub.resumable.take(el.get("previd", ""), self.owner.address)
        if old is None or old.sm is None:
            self._write(sm.failed("item-not-found", "no session to resume: bind a new one"))
            return
        state, old.sm, old.successor = old.sm, None, self
        self.jid, self.available, self.carbons = old.jid, old.available, old.carbons
        self.roster_requested, self.rooms, self.room_seen = (
            old.roster_requested, old.rooms, old.room_seen)
        self.sm = state
        self.hub.resumable.enabled(self)  # resumable again, under the same id
        self.phase = Phase.BOUND
        # takes the resource: an old connection not yet seen to be dead is closed
        # (conflict), ending nothing, since the session is this one's now
        self.hub.bind(self)
        self._arm_timer(self.hub.timeouts.idle)
        state.ack(h)  # a count too high is a stream error, and this session ends
        self._write(sm.element("resumed", previd=state.id, h=str(state.handled)))
        for unacked in state.queue:
            self._write(unacked.data)
        log.info("%s resumed its session from %s", self.jid.full, self.source)

    def _stanza(self, el: ET.Element) -> None:
        stamp_from(el, self.jid)
        if is_session_request(el):
            self.send(session_result(el))
            return
        self.hub.route(self, el)

    # --- errors, timers ---------------------------------------------------------------

    def _fail(self, err: StreamError, resumable: bool = False) -> None:
        if self.phase is Phase.CLOSED:
            return
        log.info("stream error to %s: %s", self.source, err)
        if not self._header_sent:
            self._write(st.stream_header(self.hub.domains.server, secrets.token_hex(8)))
            self._header_sent = True
        self._write(st.stream_error(err))
        self._drop(graceful=True, resumable=resumable)

    def _drop(self, graceful: bool = False, resumable: bool = False) -> None:
        """Close the connection; its session ends, or with XEP-0198 resumption and
        ``resumable`` (the connection was lost or timed out) waits to be resumed."""
        was_closed = self.phase is Phase.CLOSED
        self.phase = Phase.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy is not None and not self._busy.done():
            self._busy.cancel()
        self._inbox.clear()
        self._events.clear()
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            # close() flushes what is queued (the stream error); abort() would not
            self.transport.close()
        if not was_closed:
            self.hub.gone(self, resumable)

    def _progress(self) -> None:
        self._last_progress = asyncio.get_running_loop().time()

    def _arm_timer(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        limit = self.hub.timeouts.idle if self.phase is Phase.BOUND else self.hub.timeouts.pre_auth
        idle = asyncio.get_running_loop().time() - self._last_progress
        if self._busy is not None or idle < limit:
            self._arm_timer(max(limit - idle, 0.05))
            return
        self._fail(StreamError("connection-timeout", f"no complete stanza for {int(limit)} s"),
                   resumable=True)
