"""The gateway as an XEP-0114 component of an existing Prosody or ejabberd.

For people who already run a server, or serve several users: the daemon
connects to the server's component port as ``p2p.example.org`` and the
server's users chat with P2P contacts ``<address>@p2p.example.org`` from the
account they already have. The translation (messages, receipts, roster,
subscriptions, the bot, the public room) is the same ``Gateway`` the embedded
listener uses; this module only adds what differs:

- **the stream**: ``jabber:component:accept``, the ``<handshake>`` (SHA-1 of
  stream id + secret), reconnection with backoff. Incoming stanzas are read
  by the hardened ``StreamReader`` and retagged to ``jabber:client`` so the
  gateway sees what it sees from a client; outgoing ones are serialised with
  ``jabber:client`` as the default namespace, which on this stream means the
  component namespace. Every stanza we send must come from our domain.
- **who is who**: a user links to a local identity by in-band registration
  (XEP-0077, ``registration.py``) with the component — a new identity from a
  nickname, or an existing one by its username and XMPP password — and the
  link is kept in the data directory (``links.py``). Each linked user has one always-available
  ``ComponentSession`` for their bare JID: what the network sends goes to the
  bare JID and the server delivers it to the user's clients or stores it
  offline. Stanzas from a full JID get a session of their own (for IQ replies
  and room membership).
- **the roster**: with XEP-0356 roster permission contacts are written into
  the user's roster by privileged roster sets; without it, each new contact
  asks the user for a subscription (``privilege.py``).
- **who may use it**: only users of ``server_domains`` (by default the
  component domain's parent, ``example.org`` for ``p2p.example.org``).
- **a deleted identity**: its user is unlinked and told so in a message from
  the gateway (their stream belongs to their server, so there is none to end).

    component = Component(service, "p2p.example.org", "127.0.0.1", 5347, secret, data_dir)
    await component.start()   # connected and authenticated, or ComponentError
    ...
    await component.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path
from xml.sax.saxutils import quoteattr

from slixmpp import JID
from slixmpp.jid import InvalidJID
from slixmpp.xmlstream import ElementBase

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.tasks import TaskSet
from bridge.xmpp import stanzas as st
from bridge.xmpp.errors import XmppError, error_reply, error_reply_to, stanza_error_for
from bridge.xmpp.gateway import Gateway
from bridge.xmpp.jids import Domains, parse_jid
from bridge.xmpp.links import Links
from bridge.xmpp.privilege import ComponentRoster, Privilege, advertisement
from bridge.xmpp.reader import Limits, StanzaReceived, StreamClosed, StreamOpened, StreamReader
from bridge.xmpp.registration import Registration
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_iq, register_stanza_plugins
from bridge.xmpp.streamerror import StreamError
from bridge.xmpp.users import ComponentIq, ComponentSession, Users

log = logging.getLogger(__name__)

COMPONENT_NS = "jabber:component:accept"
DEFAULT_PORT = 5347
MAX_PENDING = 1000  # our IQs waiting for an answer
_CNS = f"{{{COMPONENT_NS}}}"
_C = f"{{{st.CLIENT_NS}}}"
Event = StanzaReceived | StreamOpened | StreamClosed


class ComponentError(UserError):
    """The component could not connect to or authenticate with the XMPP server."""


def to_client_ns(el: ET.Element) -> ET.Element:
    """Retag the component namespace as ``jabber:client`` in place (what the gateway reads)."""
    for node in el.iter():
        if node.tag.startswith(_CNS):
            node.tag = _C + node.tag[len(_CNS):]
    return el


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret."""
    return hashlib.sha1((stream_id + secret).encode(), usedforsecurity=False).hexdigest()


class Component:
    def __init__(
        self,
        service: ServiceAPI,
        domain: str,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        secret: str = "",
        data_dir: Path | str = ".",
        *,
        server_domains: tuple[str, ...] | None = None,
        connect_timeout: float = 10.0,
        max_backoff: float = 30.0,
        limits: Limits | None = None,
    ) -> None:
        register_stanza_plugins()
        if not secret:
            raise ComponentError("a component needs the secret configured on the server "
                                 "(component_secret)")
        self.service = service
        self.domains = Domains(domain.lower(), component=True)
        self.domain = self.domains.server
        self.host = host
        self.port = port
        self.secret = secret
        parent = self.domain.split(".", 1)[1] if "." in self.domain else self.domain
        self.server_domains = tuple(d.lower() for d in (server_domains or (parent,)))
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.limits = limits or Limits(max_stanza_bytes=1024 * 1024)
        self.links = Links(data_dir)
        self.sessions = Sessions()
        self.gateway = Gateway(service, self.sessions, self.domains)
        self.gateway.roster = ComponentRoster(self)
        self.iq = ComponentIq(self)
        self.privilege = Privilege(self)
        self.registration = Registration(self)
        self.users = Users(self)
        self.gateway.identity_deleted = self.users.identity_deleted
        self.tasks = TaskSet("XMPP component", logger=log)
        self.connected = asyncio.Event()
        self._pending: OrderedDict[str, asyncio.Future[ET.Element]] = OrderedDict()
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._xml = StreamReader(self.limits)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def privileges(self) -> dict[str, dict[str, str]]:
        """XEP-0356 grants: server domain -> access -> type."""
        return self.privilege.granted

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and authenticate; raises ComponentError if the server refuses."""
        self.gateway.start()
        self.users.attach_linked()
        leftover = await self._connect()
        self._runner = self.tasks.spawn(self._run(leftover), name="component stream")

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(st.STREAM_CLOSE)
                self._writer.close()
                await asyncio.wait_for(self._writer.wait_closed(), 2)
            self._writer = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        await self.tasks.close()
        await self.gateway.close()

    def settings(self) -> dict[str, object]:
        return {
            "mode": "component",
            "domain": self.domain,
            "server": f"{self.host}:{self.port}",
            "contacts_domain": self.domains.contacts,
            "public_room": self.domains.public_room,
            "bot": self.domains.bot,
            "linked_users": len(self.links.all()),
        }

    # --- the stream --------------------------------------------------------------------

    async def _connect(self) -> list[Event]:
        where = f"{self.host}:{self.port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ComponentError(f"cannot reach the XMPP server's component port {where}: "
                                 f"{exc or 'timed out'}") from None
        self._xml = StreamReader(self.limits)
        writer.write(
            f"<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' "
            f"xmlns:stream='{st.STREAM_NS}' to={quoteattr(self.domain)}>".encode())
        leftover: list[Event] = []
        done = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                while not done:
                    data = await reader.read(65536)
                    if not data:
                        raise ComponentError(f"{where} closed the connection during the "
                                             "component handshake")
                    for event in self._xml.feed(data):
                        if done:
                            leftover.append(event)
                        elif isinstance(event, StreamOpened):
                            stream_id = event.attrs.get("id", "")
                            digest = handshake_digest(stream_id, self.secret)
                            writer.write(f"<handshake>{digest}</handshake>".encode())
                        elif isinstance(event, StreamClosed):
                            raise ComponentError(f"{where} closed the stream")
                        elif event.element.tag == _CNS + "handshake":
                            done = True
                        else:
                            raise ComponentError(self._refusal(event.element, where))
        except TimeoutError:
            writer.close()
            raise ComponentError(f"no component handshake with {where} within "
                                 f"{self.connect_timeout:g} s") from None
        except (StreamError, ComponentError, OSError) as exc:
            writer.close()
            if isinstance(exc, ComponentError):
                raise
            raise ComponentError(f"component stream with {where} failed: {exc}") from None
        self._reader, self._writer = reader, writer
        self.connected.set()
        log.info("XMPP component %s connected to %s", self.domain, where)
        return leftover

    def _refusal(self, el: ET.Element, where: str) -> str:
        if el.tag == f"{{{st.STREAM_NS}}}error":
            condition = next((c.tag.split("}")[-1] for c in el
                              if not c.tag.endswith("}text")), "undefined-condition")
            text = el.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text") or ""
            hint = {
                "not-authorized": "the component secret does not match the server's",
                "host-unknown": f"the server has no Component \"{self.domain}\" configured",
                "conflict": f"another component is already connected as {self.domain}",
            }.get(condition, text or condition)
            return f"{where} refused the component {self.domain}: {hint}"
        return f"{where} sent {el.tag} instead of the component handshake"

    async def _run(self, leftover: list[Event]) -> None:
        backoff = 1.0
        while not self._closing:
            try:
                for event in leftover:
                    self._event(event)
                leftover = []
                await self._read_loop()
                log.warning("XMPP server %s:%d closed the component stream", self.host,
                            self.port)
            except (OSError, StreamError) as exc:
                log.warning("component stream lost: %s", exc)
            self.connected.clear()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            while not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                try:
                    leftover = await self._connect()
                    backoff = 1.0
                    break
                except ComponentError as exc:
                    log.warning("component reconnect failed: %s", exc)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        while True:
            data = await self._reader.read(65536)
            if not data:
                return
            for event in self._xml.feed(data):
                if isinstance(event, StreamClosed):
                    return
                self._event(event)

    def _event(self, event: Event) -> None:
        if not isinstance(event, StanzaReceived):
            return
        try:
            self._stanza(to_client_ns(event.element))
        except Exception:
            log.exception("component could not handle a stanza")

    def send(self, stanza: ElementBase | ET.Element) -> None:
        """Write a stanza; it must come from this component's domain."""
        xml = stanza.xml if isinstance(stanza, ElementBase) else stanza
        try:
            frm = JID(xml.get("from", ""))
        except InvalidJID:
            frm = JID()
        if frm.domain != self.domain:
            log.error("not sending a stanza from %r: not in %s", xml.get("from"), self.domain)
            return
        if self._writer is None or self._writer.is_closing():
            log.debug("component not connected; a %s to %s was dropped",
                     xml.tag.split("}")[-1], xml.get("to"))
            return
        self._writer.write(st.serialize(xml))

    def write(self, data: bytes) -> None:
        """Write one stanza already serialised, from a contact of this component's
        domain (``stanzas.chat_message``)."""
        if self._writer is None or self._writer.is_closing():
            log.debug("component not connected; a message was dropped")
            return
        self._writer.write(data)

    def request(self, iq: ET.Element, what: str) -> asyncio.Future[ET.Element]:
        """Send an IQ get/set; the future gets the server's result or error."""
        ident = f"{what}-{next(self._ids)}"
        iq.set("id", ident)
        future: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        while len(self._pending) > MAX_PENDING:  # a server that never answers
            _, stale = self._pending.popitem(last=False)
            stale.cancel()
        self.send(iq)
        return future

    def presence(self, to: str, ptype: str, frm: str | None = None) -> None:
        presence = ET.Element(_C + "presence", {"from": frm or self.domain, "to": to})
        if ptype:
            presence.set("type", ptype)
        self.send(presence)

    # --- routing -----------------------------------------------------------------------

    def _stanza(self, el: ET.Element) -> None:
        kind = el.tag.rsplit("}", 1)[-1]
        if kind not in ("message", "presence", "iq"):
            return
        try:
            frm, to = parse_jid(el.get("from")), parse_jid(el.get("to"))
        except InvalidJID:
            return
        if frm is None or to is None or to.domain != self.domain:
            return
        stype = el.get("type", "")
        if kind == "message" and not frm.local and (grant := advertisement(el)) is not None:
            self.privilege.on_advertisement(frm.domain, *grant)
            return
        if kind == "iq" and stype in ("result", "error"):
            future = self._pending.pop(el.get("id", ""), None)
            if future is not None and not future.done():
                future.set_result(el)
            return
        if frm.domain not in self.server_domains:
            if stype != "error":
                self.send(error_reply(kind, frm.full, to.full, el.get("id", ""), stanza_error_for(
                    XmppError("not-allowed", f"this gateway serves users of "
                                             f"{', '.join(self.server_domains)} only"))))
            return
        if kind == "iq" and self.privilege.is_roster_push(frm, el):
            self.send(self._result(el, frm, to))  # nothing to learn from it
            return
        try:
            self.users.handle(kind, frm, to, el)
        except Exception as exc:
            if stype in ("error", "result"):
                return
            body = (el.findtext(_C + "body") or "") if kind == "message" else ""
            self.send(error_reply_to(kind, dict(el.attrib), frm.full, exc, body))

    @staticmethod
    def _result(el: ET.Element, frm: JID, to: JID) -> ElementBase:
        reply = new_iq("result", el.get("id", ""))
        reply["from"] = to.full
        reply["to"] = frm.full
        return reply



__all__ = ["DEFAULT_PORT", "Component", "ComponentError", "ComponentSession", "to_client_ns"]
