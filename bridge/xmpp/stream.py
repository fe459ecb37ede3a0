"""One client connection: stream negotiation up to a bound resource.

Owns the byte-level life of a c2s connection: direct-TLS sniffing, STARTTLS,
SASL with throttling, resource binding, timeouts and stream errors. Once the
resource is bound every stanza goes to ``hub.route``; this module never looks
inside messages, presences or non-negotiation IQs.

Phases and what each accepts are data (``ACCEPTS``); anything else ends the
stream with the condition ``_refuse`` picks. Pitfalls handled here, found by
running real clients (Pidgin, Gajim, profanity, poezio, slixmpp) against the
listener: reading is paused from ``<proceed/>`` until TLS is up, bytes the TLS
layer delivers before ``start_tls`` returns are queued and replayed, and the
XML reader is reset after TLS and after SASL success. Plaintext that
follows ``<starttls/>`` is discarded (RFC 6120 §5.4.3.3, the STARTTLS
command-injection attack).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import secrets
import ssl
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from slixmpp import JID
from slixmpp.jid import InvalidJID
from slixmpp.xmlstream import ElementBase

from bridge.events import IdentityInfo
from bridge.xmpp import stanzas as st
from bridge.xmpp.reader import Limits, StanzaReceived, StreamClosed, StreamOpened, StreamReader
from bridge.xmpp.sasl import (
    MECHANISMS,
    SaslError,
    ScramCredentials,
    ScramServer,
    b64decode,
    parse_plain,
)
from bridge.xmpp.slixfix import new_iq
from bridge.xmpp.streamerror import StreamError

if TYPE_CHECKING:
    from bridge.xmpp.jids import Domains
    from bridge.xmpp.throttle import LoginThrottle

log = logging.getLogger(__name__)

MAX_WRITE_BUFFER = 4 * 1024 * 1024  # a client that stops reading is cut off here


@dataclass(frozen=True, slots=True)
class Timeouts:
    pre_auth: float = 60.0  # seconds without a complete stanza before binding
    idle: float = 900.0  # after binding; clients send whitespace or pings every 5 min
    tls_handshake: float = 30.0


def tls_failure(exc: BaseException) -> str:
    """Why a TLS handshake failed, for the log: some exceptions have no text at all."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({type(exc).__name__} from {exc.library or 'OpenSSL'})"
    text = str(exc)
    if text:
        return f"{text} ({type(exc).__name__})"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return f"the client closed the connection during the handshake ({type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return f"no handshake in time ({type(exc).__name__})"
    return type(exc).__name__


class Phase(enum.Enum):
    PLAIN = "plain"  # before STARTTLS
    TLS = "tls"  # encrypted, not authenticated
    AUTHED = "authed"  # authenticated, no resource yet
    BOUND = "bound"  # full JID; stanzas are routed
    CLOSED = "closed"


_TLS = f"{{{st.TLS_NS}}}"
_SASL = f"{{{st.SASL_NS}}}"
_C = f"{{{st.CLIENT_NS}}}"
STANZAS = frozenset({_C + "message", _C + "presence", _C + "iq"})

ACCEPTS: dict[Phase, frozenset[str]] = {
    Phase.PLAIN: frozenset({_TLS + "starttls"}),
    Phase.TLS: frozenset({_SASL + "auth", _SASL + "response", _SASL + "abort"}),
    Phase.AUTHED: frozenset({_C + "iq"}),
    Phase.BOUND: STANZAS,
    Phase.CLOSED: frozenset(),
}


class Hub(Protocol):
    """What a connection needs from the server that owns it."""

    domains: Domains
    throttle: LoginThrottle
    limits: Limits
    timeouts: Timeouts
    ssl_context: ssl.SSLContext
    scram_secret: bytes
    max_auth_failures: int

    def find_user(self, name: str) -> IdentityInfo | None: ...
    def check_password(self, username: str, password: str) -> IdentityInfo | None: ...
    def scram_credentials(self, mechanism: str, username: str) -> ScramCredentials | None: ...
    def bind(self, conn: C2SConnection) -> None: ...
    def route(self, conn: C2SConnection, el: ET.Element) -> None: ...
    def gone(self, conn: C2SConnection) -> None: ...


class C2SConnection(asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.phase = Phase.PLAIN
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self._xml = StreamReader(hub.limits)
        self._inbox: deque[bytes] = deque()
        self._events: deque[StreamOpened | StanzaReceived | StreamClosed] = deque()
        self._busy: asyncio.Task[None] | None = None
        self._first_byte = True
        self._header_sent = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_progress = 0.0
        self._scram: ScramServer | None = None
        self._failures = 0
        # set once authenticated / bound; read by the gateway
        self.owner: IdentityInfo | None = None
        self.jid = JID()
        self.available = False
        self.carbons = False
        self.roster_requested = False
        self.rooms: dict[str, str] = {}  # room JID -> our nick in it
        self.room_seen: dict[str, set[str]] = {}  # room JID -> occupant nicks announced

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
        self._drop()

    # --- what the gateway uses --------------------------------------------------

    @property
    def bare(self) -> str:
        return self.jid.bare

    def send(self, stanza: ElementBase | ET.Element) -> None:
        self._write(st.serialize(stanza))

    def close(self, err: StreamError | None = None) -> None:
        """End the stream, with an error if given (conflict, system-shutdown ...)."""
        if self.phase is Phase.CLOSED:
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
            raise self._refuse(el.tag)
        if self.phase is Phase.PLAIN:
            return self._starttls()
        if self.phase is Phase.TLS:
            return self._sasl(el)
        if self.phase is Phase.AUTHED:
            self._negotiate_iq(el)
            return None
        self._stanza(el)
        return None

    def _refuse(self, tag: str) -> StreamError:
        if self.phase is Phase.PLAIN:
            return StreamError("policy-violation", "STARTTLS is required first")
        if tag in STANZAS:
            return StreamError("not-authorized", "authenticate and bind a resource first")
        return StreamError("unsupported-stanza-type", f"unexpected element {tag}")

    def _open(self, event: StreamOpened) -> None:
        domain = self.hub.domains.server
        self._write(st.stream_header(domain, secrets.token_hex(8)))
        self._header_sent = True
        if event.tag != f"{{{st.STREAM_NS}}}stream" or event.default_ns != st.CLIENT_NS:
            raise StreamError("invalid-namespace", "expected a jabber:client stream")
        version = event.attrs.get("version", "0.9")
        if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 1:
            raise StreamError("unsupported-version", "XMPP 1.0 streams only")
        to = event.attrs.get("to", domain).lower()
        if to != domain:
            raise StreamError("host-unknown", f"this server is {domain}")
        if self.phase is Phase.PLAIN:
            tls = st.element(_TLS + "starttls")
            ET.SubElement(tls, _TLS + "required")
            self._write(st.features(tls))
        elif self.phase is Phase.TLS:
            mechs = st.element(_SASL + "mechanisms")
            for name in MECHANISMS:
                ET.SubElement(mechs, _SASL + "mechanism").text = name
            self._write(st.features(mechs))
        else:
            session = st.element(f"{{{st.SESSION_NS}}}session")
            ET.SubElement(session, f"{{{st.SESSION_NS}}}optional")
            self._write(st.features(st.element(f"{{{st.BIND_NS}}}bind"), session))

    # --- STARTTLS ------------------------------------------------------------------

    def _starttls(self) -> Awaitable[None]:
        self._write(st.serialize(st.element(_TLS + "proceed")))
        # Anything already received after <starttls/> was sent in plaintext and
        # must not be taken as coming from inside TLS.
        self._inbox.clear()
        self._events.clear()
        return self._upgrade()

    async def _upgrade(self) -> None:
        assert self.transport is not None
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

    # --- SASL ---------------------------------------------------------------------

    def _sasl(self, el: ET.Element) -> Awaitable[None] | None:
        try:
            if el.tag == _SASL + "abort":
                self._scram = None
                raise SaslError("aborted")
            if el.tag == _SASL + "auth":
                return self._sasl_auth(el)
            return self._sasl_response(el)
        except SaslError as err:
            self._scram = None
            self._sasl_failure(err)
            return None

    def _sasl_auth(self, el: ET.Element) -> Awaitable[None] | None:
        mechanism = el.get("mechanism", "")
        if mechanism not in MECHANISMS:
            raise SaslError("invalid-mechanism")
        text = (el.text or "").strip()
        initial = b"" if text in ("", "=") else b64decode(text)
        if mechanism == "PLAIN":
            authzid, user, password = parse_plain(initial)
            user = self._localpart(user)
            if self.hub.throttle.locked_for(user):
                return self._locked(user)
            identity = self.hub.check_password(user, password)
            return self._login(user, identity, authzid, b"")
        if not initial:
            raise SaslError("malformed-request", "SCRAM needs an initial response")
        self._scram = ScramServer(
            mechanism,
            lambda name: self.hub.scram_credentials(mechanism, self._localpart(name)),
            secrets.token_urlsafe(18),
            self.hub.scram_secret,
        )
        challenge = self._scram.first(initial)
        user = self._localpart(self._scram.username)
        if self.hub.throttle.locked_for(user):
            self._scram = None
            return self._locked(user)
        self._write(
            st.serialize(st.element(_SASL + "challenge", base64.b64encode(challenge).decode()))
        )
        return None

    def _sasl_response(self, el: ET.Element) -> Awaitable[None] | None:
        scram, self._scram = self._scram, None
        if scram is None:
            raise SaslError("malformed-request", "no SASL exchange in progress")
        user = self._localpart(scram.username)
        try:
            final = scram.final(b64decode((el.text or "").strip()))
        except SaslError as err:
            if err.condition != "not-authorized":
                raise
            return self._login(user, None, scram.authzid, b"")
        return self._login(user, self.hub.find_user(user), scram.authzid, final)

    def _localpart(self, name: str) -> str:
        suffix = "@" + self.hub.domains.server
        return name[: -len(suffix)] if name.lower().endswith(suffix) else name

    def _login(
        self, user: str, identity: IdentityInfo | None, authzid: str, extra: bytes
    ) -> Awaitable[None] | None:
        throttle = self.hub.throttle
        if identity is None:
            return self._login_failed(user, throttle.failure(self.source, user))
        if authzid and authzid.lower() not in {
            identity.username.lower(),
            self.hub.domains.user(identity.username).lower(),
        }:
            raise SaslError("invalid-authzid")
        throttle.success(self.source, user)
        self.owner = identity
        success = st.element(_SASL + "success", base64.b64encode(extra).decode() if extra else "")
        self._write(st.serialize(success))
        self.phase = Phase.AUTHED
        self._xml.reset()  # the client opens a new stream now
        self._events.clear()
        self._header_sent = False
        self._failures = 0
        log.info("%s logged in from %s", identity.username, self.source)
        return None

    def _locked(self, user: str) -> Awaitable[None]:
        minutes = max(1, round(self.hub.throttle.locked_for(user) / 60))
        return self._login_failed(
            user,
            0.0,
            f"too many failed logins for this account; try again in {minutes} min",
        )

    def _login_failed(self, user: str, delay: float, text: str = "") -> Awaitable[None]:
        self._failures += 1
        log.info("failed login for %r from %s", user, self.source)

        async def answer() -> None:
            if delay:
                await asyncio.sleep(delay)
            self._sasl_failure(SaslError("not-authorized", text))
            if self._failures >= self.hub.max_auth_failures:
                raise StreamError("policy-violation", "too many failed login attempts")

        return answer()

    def _sasl_failure(self, err: SaslError) -> None:
        failure = st.element(_SASL + "failure")
        ET.SubElement(failure, _SASL + err.condition)
        if err.text:
            ET.SubElement(failure, _SASL + "text").text = err.text
        self._write(st.serialize(failure))

    # --- bind and session -----------------------------------------------------------

    def _negotiate_iq(self, el: ET.Element) -> None:
        bind = el.find(f"{{{st.BIND_NS}}}bind")
        if el.get("type") == "set" and bind is not None:
            self._bind(el, bind)
            return
        if el.get("type") == "set" and el.find(f"{{{st.SESSION_NS}}}session") is not None:
            self._session_result(el)
            return
        raise StreamError("not-authorized", "bind a resource first")

    def _bind(self, iq: ET.Element, bind: ET.Element) -> None:
        assert self.owner is not None
        wanted = (bind.findtext(f"{{{st.BIND_NS}}}resource") or "").strip()
        resource = wanted or f"paranoim-{secrets.token_hex(4)}"
        try:
            jid = JID(f"{self.hub.domains.user(self.owner.username)}/{resource}")
            if len(resource.encode()) > 1023:
                raise InvalidJID("resource too long")
        except InvalidJID:
            reply = new_iq("error", iq.get("id", ""))
            reply["error"]["type"] = "modify"
            reply["error"]["condition"] = "bad-request"
            reply["error"]["text"] = "that resource name is not allowed"
            self.send(reply)
            return
        self.jid = jid
        self.phase = Phase.BOUND
        self.hub.bind(self)  # may end an older connection that had this resource
        reply = new_iq("result", iq.get("id", ""))
        reply["bind"]["jid"] = jid.full
        self.send(reply)
        self._arm_timer(self.hub.timeouts.idle)

    def _session_result(self, iq: ET.Element) -> None:
        # RFC 3921 session establishment: a no-op today, but libpurple always
        # sends it and gives up on an error.
        self.send(new_iq("result", iq.get("id", "")))

    def _stanza(self, el: ET.Element) -> None:
        frm = el.get("from")
        if frm:
            try:
                claimed = JID(frm)
            except InvalidJID as exc:
                raise StreamError("invalid-from", "malformed from address") from exc
            if claimed.full not in (self.jid.full, self.jid.bare):
                raise StreamError("invalid-from", "from does not match the bound JID")
        el.set("from", self.jid.full)
        if el.tag == _C + "iq" and el.find(f"{{{st.SESSION_NS}}}session") is not None:
            self._session_result(el)
            return
        self.hub.route(self, el)

    # --- output, errors, timers --------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.phase is Phase.CLOSED or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.info("%s is not reading; dropping the connection", self.source)
            transport.abort()
            self._drop()

    def _fail(self, err: StreamError) -> None:
        if self.phase is Phase.CLOSED:
            return
        log.info("stream error to %s: %s", self.source, err)
        if not self._header_sent:
            self._write(st.stream_header(self.hub.domains.server, secrets.token_hex(8)))
            self._header_sent = True
        self._write(st.stream_error(err))
        self._drop(graceful=True)

    def _drop(self, graceful: bool = False) -> None:
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
            # close() flushes what is queued (the stream error); abort() would not
            self.transport.close()
        if not was_closed:
            self.hub.gone(self)

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
        self._fail(StreamError("connection-timeout", f"no complete stanza for {int(limit)} s"))
