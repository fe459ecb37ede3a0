"""The embedded XMPP client-to-server listener: what the daemon starts and stops.

Owns the listening socket, the certificate, the registry of connections and
bound sessions, and the routing of bound stanzas: IQs to ``server_iq``,
messages and presences to the ``gateway``. One exception mapping
(``errors.py``) turns whatever a handler raises into a stanza error, so a bad
stanza costs one error reply and never the connection, and a broken
connection never touches the others.

    server = C2SServer(service, "127.0.0.1", 5222, cert_dir, domain="localhost")
    await server.start()        # server.port, server.fingerprint, server.cert_path
    ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

from bridge.api import ServiceAPI
from bridge.events import IdentityInfo
from bridge.xmpp.errors import error_reply_to
from bridge.xmpp.gateway import Gateway
from bridge.xmpp.jids import Domains
from bridge.xmpp.mam import Mam
from bridge.xmpp.reader import Limits
from bridge.xmpp.sasl import SCRAM_HASHES, ScramCredentials, derive_credentials
from bridge.xmpp.server_iq import ServerIq
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import register_stanza_plugins
from bridge.xmpp.sm import RESUME_TIMEOUT, Resumable
from bridge.xmpp.stream import C2SConnection, Phase, Timeouts
from bridge.xmpp.streamerror import StreamError
from bridge.xmpp.throttle import LoginThrottle
from bridge.xmpp.tls import Certificate, ensure_certificate, server_context
from bridge.xmpp.upload import Upload

log = logging.getLogger(__name__)

DEFAULT_PORT = 5222


class _Refuse(asyncio.Protocol):
    """Answers a connection beyond ``max_connections`` by closing it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class C2SServer:
    def __init__(
        self,
        service: ServiceAPI,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        cert_dir: Path | str = ".",
        domain: str = "localhost",
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        throttle: LoginThrottle | None = None,
        max_auth_failures: int = 3,
        max_connections: int = 1000,
        resume_timeout: float = RESUME_TIMEOUT,
    ) -> None:
        register_stanza_plugins()
        self.service = service
        self.host = host
        self.port = port  # the real one after start() when 0 was asked for
        self.cert_dir = Path(cert_dir)
        self.domains = Domains(domain.lower())
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.throttle = throttle or LoginThrottle()
        self.max_auth_failures = max_auth_failures
        self.max_connections = max_connections
        self.scram_secret = secrets.token_bytes(32)
        self.sessions = Sessions()
        self.resumable = Resumable(self.end_session, resume_timeout)  # XEP-0198 (sm.py)
        self.gateway = Gateway(service, self.sessions, self.domains)
        self.iq = ServerIq(service, self.sessions, self.domains, self.gateway)
        self.gateway.identity_deleted = self._identity_deleted
        self.gateway.delivery.stanza_ids = True  # the archive below names messages by them
        Mam(service, self.domains).install(self.iq)
        self.iq.install_pep()  # XEP-0163 PEP: bookmarks, avatars
        Upload(service).install(self.iq)  # XEP-0363, when the daemon runs a file listener
        self.certificate: Certificate | None = None
        self._connections: set[C2SConnection] = set()
        self._server: asyncio.Server | None = None
        self._scram_cache: dict[tuple[str, str], tuple[bytes, ScramCredentials]] = {}

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.certificate = await asyncio.to_thread(
            ensure_certificate, self.cert_dir, self.domains.server
        )
        self.ssl_context = server_context(self.certificate)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.gateway.start()
        log.info("XMPP listener on %s:%d (%s), certificate %s", self.host, self.port,
                 self.domains.server, self.certificate.fingerprint)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close(StreamError("system-shutdown", "the ParanoIM daemon is stopping"))
        for conn in self.resumable.waiting():
            self.end_session(conn)
        await self.gateway.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint if self.certificate else ""

    @property
    def cert_path(self) -> Path | None:
        return self.certificate.cert_path if self.certificate else None

    def settings(self) -> dict[str, object]:
        """What a person types into their client (for ``ServiceAPI.xmpp_settings``)."""
        return {
            "host": self.host,
            "port": self.port,
            "domain": self.domains.server,
            "fingerprint": self.fingerprint,
            "tls": "starttls",
            "contacts_domain": self.domains.contacts,
            "rooms_domain": self.domains.rooms,
            "bot": self.domains.bot,
        }

    def _new_connection(self) -> asyncio.Protocol:
        if len(self._connections) >= self.max_connections:
            log.warning("connection refused: %d connections open", len(self._connections))
            return _Refuse()
        conn = C2SConnection(self)
        self._connections.add(conn)
        return conn

    # --- what connections ask (stream.Hub) ------------------------------------------------

    def find_user(self, name: str) -> IdentityInfo | None:
        return self.service.identity_by_username(name) or (
            self.service.identity_by_username(name.lower()) if name != name.lower() else None
        )

    def check_password(self, username: str, password: str) -> IdentityInfo | None:
        identity = self.find_user(username)
        return self.service.check_login(identity.username if identity else username, password)

    def scram_credentials(self, mechanism: str, username: str) -> ScramCredentials | None:
        identity = self.find_user(username)
        if identity is None:
            return None
        # PBKDF2 once per user, password and hash, not on every login attempt;
        # the cache is keyed by a hash of the password so a change is noticed.
        password_key = hashlib.sha256(identity.xmpp_password.encode()).digest()
        key = (mechanism, identity.username)
        cached = self._scram_cache.get(key)
        if cached is None or cached[0] != password_key:
            creds = derive_credentials(
                SCRAM_HASHES[mechanism], identity.xmpp_password, secrets.token_bytes(16)
            )
            cached = (password_key, creds)
            self._scram_cache[key] = cached
        return cached[1]

    def _identity_deleted(self, owner: str) -> None:
        self.gateway.end_sessions(owner)

    def bind(self, conn: C2SConnection) -> None:
        old = self.sessions.add(conn)
        if old is not None:
            old.close(StreamError("conflict", "replaced by a new connection with this resource"))

    def gone(self, conn: C2SConnection, resumable: bool = False) -> None:
        """A connection closed. Its session ends, unless it may be resumed (XEP-0198):
        then it stays available, what it is sent waits, and it ends if not resumed."""
        self._connections.discard(conn)
        if resumable and self.resumable.hibernate(conn):
            log.info("%s lost its connection; its session waits %d s to be resumed",
                     conn.jid.full, self.resumable.timeout)
            return
        self.end_session(conn)

    def end_session(self, conn: C2SConnection) -> None:
        """The session is over: the others hear it left, and what it did not
        acknowledge is offered again (``delivery.py``)."""
        self.resumable.forget(conn)
        if self.sessions.remove(conn):
            self.gateway.on_disconnect(conn)
            self.gateway.room.leave(conn)
        if conn.sm is not None:
            state, conn.sm = conn.sm, None
            state.fail_all()

    def route(self, conn: C2SConnection, el: ET.Element) -> None:
        kind = el.tag.rsplit("}", 1)[-1]
        try:
            if kind == "iq":
                self.iq.handle(conn, el)
            elif kind == "message":
                self.gateway.on_message(conn, el)
            else:
                self.gateway.on_presence(conn, el)
        except Exception as exc:
            if el.get("type") in ("error", "result") or conn.phase is Phase.CLOSED:
                return  # never answer an error or a result with an error
            body = el.findtext("{jabber:client}body") or "" if kind == "message" else ""
            conn.send(error_reply_to(kind, dict(el.attrib), conn.jid.full, exc, body))
