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
  (XEP-0077) with the component — a new identity from a nickname, or an
  existing one by its username and XMPP password — and the link is kept in
  the data directory (``links.py``). Each linked user has one always-available
  ``ComponentSession`` for their bare JID: what the network sends goes to the
  bare JID and the server delivers it to the user's clients or stores it
  offline. Stanzas from a full JID get a session of their own (for IQ replies
  and room membership).
- **the roster**: with XEP-0356 roster permission (Prosody + mod_privilege:
  ``roster = "both"``) contacts are written into the user's roster by
  privileged roster sets; without it, each new contact asks the user for a
  subscription (``<presence type="subscribe">`` from the contact's JID).
- **who may use it**: only users of ``server_domains`` (by default the
  component domain's parent, ``example.org`` for ``p2p.example.org``).

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
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from slixmpp import JID
from slixmpp.jid import InvalidJID
from slixmpp.xmlstream import ElementBase

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.events import ContactInfo, ContactState, IdentityInfo
from bridge.xmpp import stanzas as st
from bridge.xmpp.errors import XmppError, error_reply, error_reply_to, stanza_error_for
from bridge.xmpp.gateway import Gateway
from bridge.xmpp.jids import Domains, parse_jid
from bridge.xmpp.links import LinkConflictError, Links
from bridge.xmpp.reader import Limits, StanzaReceived, StreamClosed, StreamOpened, StreamReader
from bridge.xmpp.roster import ROSTER_NS, RosterMap
from bridge.xmpp.server_iq import DISCO_INFO, DISCO_ITEMS, PING, RECEIPTS, ServerIq
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_iq, register_stanza_plugins
from bridge.xmpp.streamerror import StreamError

log = logging.getLogger(__name__)

COMPONENT_NS = "jabber:component:accept"
PRIVILEGE_NS = "urn:xmpp:privilege:2"
REGISTER_NS = "jabber:iq:register"
DEFAULT_PORT = 5347
MAX_VIEWS = 10_000  # full-JID sessions remembered (room members are never dropped)
_CNS = f"{{{COMPONENT_NS}}}"
_C = f"{{{st.CLIENT_NS}}}"
_REG = f"{{{REGISTER_NS}}}"
_UNREGISTERED_IQS = frozenset({DISCO_INFO, DISCO_ITEMS, PING})


class ComponentError(UserError):
    """The component could not connect to or authenticate with the XMPP server."""


@dataclass(eq=False)
class ComponentSession:
    """A user of the server, as the gateway sees a client (``sessions.Session``)."""

    owner: IdentityInfo | None
    jid: JID
    component: Component
    available: bool = False
    carbons: bool = False
    roster_requested: bool = False
    rooms: dict[str, str] = field(default_factory=dict)
    room_seen: dict[str, set[str]] = field(default_factory=dict)

    @property
    def bare(self) -> str:
        return self.jid.bare

    def send(self, stanza: ElementBase | ET.Element) -> None:
        self.component.send(stanza)

    def close(self, err: StreamError | None = None) -> None:
        """Nothing to close: the user's connection belongs to their server."""


class ComponentRoster(RosterMap):
    """Roster pushes become privileged roster sets or subscription requests."""

    def __init__(self, component: Component) -> None:
        super().__init__(component.service, component.sessions, component.domains)
        self.component = component

    def push(self, owner: str, contact: ContactInfo | None = None,
             removed: str | None = None) -> None:
        self.component.push_contact(owner, contact, removed)


class ComponentIq(ServerIq):
    """Server IQs minus what belongs to the user's own server (roster, carbons, blocking)."""

    def __init__(self, component: Component) -> None:
        super().__init__(component.service, component.sessions, component.domains,
                         component.gateway)
        for key in list(self._handlers):
            kind, ns, _ = key
            if kind in ("server", "account") and ns not in (*_UNREGISTERED_IQS, "vcard-temp"):
                del self._handlers[key]
        d = self.domains
        self.identities["server"] = [("gateway", "paranoim", "ParanoIM P2P network"),
                                     ("conference", "text", "ParanoIM rooms")]
        self.features["server"] = [DISCO_INFO, DISCO_ITEMS, PING, REGISTER_NS, RECEIPTS,
                                   "http://jabber.org/protocol/muc"]
        self.items["server"] = [(d.public_room, "Public room"), (d.bot, "ParanoIM bot")]
        del self._handlers[("server", "vcard-temp", "get")]  # the server kind has no owner


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
        self.privileges: dict[str, dict[str, str]] = {}  # server domain -> access -> type
        self.connected = asyncio.Event()
        self._homes: dict[str, ComponentSession] = {}  # user bare JID -> its session
        self._views: OrderedDict[str, ComponentSession] = OrderedDict()  # full JID -> session
        self._pushed: dict[tuple[str, str], tuple[str, str]] = {}
        self._pending: dict[str, asyncio.Future[ET.Element]] = {}
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._xml = StreamReader(self.limits)
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and authenticate; raises ComponentError if the server refuses."""
        self.gateway.start()
        for jid, address in self.links.all():
            identity = self._identity(address)
            if identity is not None:
                self._attach_home(jid, identity)
        leftover = await self._connect()
        self._runner = asyncio.ensure_future(self._run(leftover))

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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the stream --------------------------------------------------------------------

    async def _connect(self) -> list[StanzaReceived | StreamOpened | StreamClosed]:
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
        leftover: list[StanzaReceived | StreamOpened | StreamClosed] = []
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

    async def _run(self, leftover: list[StanzaReceived | StreamOpened | StreamClosed]) -> None:
        backoff = 1.0
        while not self._closing:
            try:
                for event in leftover:
                    self._event(event)
                leftover = []
                await self._read_loop()
                log.warning("XMPP server %s:%d closed the component stream", self.host,
                            self.port)
            except asyncio.CancelledError:
                raise
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

    def _event(self, event: StanzaReceived | StreamOpened | StreamClosed) -> None:
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
            log.info("component not connected; a %s to %s was dropped",
                     xml.tag.split("}")[-1], xml.get("to"))
            return
        self._writer.write(st.serialize(xml))

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
        if kind == "message" and not frm.local and \
                el.find(f"{{{PRIVILEGE_NS}}}privilege") is not None:
            self._on_privilege(frm.domain, el)
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
        conn = self._session_for(frm)
        try:
            if kind == "iq":
                self._on_iq(conn, el, to)
            elif kind == "message":
                self._on_message(conn, el)
            else:
                self._on_presence(conn, el, to)
        except Exception as exc:
            if stype in ("error", "result"):
                return
            body = (el.findtext(_C + "body") or "") if kind == "message" else ""
            self.send(error_reply_to(kind, dict(el.attrib), frm.full, exc, body))

    def _identity(self, address: str) -> IdentityInfo | None:
        try:
            return self.service.identity(address)
        except UserError:
            return None  # deleted in the web UI since it was linked

    def _session_for(self, frm: JID) -> ComponentSession:
        home = self._homes.get(frm.bare)  # there is one exactly while the user is linked
        owner = home.owner if home is not None else None
        if not frm.resource:
            return home if home is not None else ComponentSession(None, frm, self)
        view = self._views.get(frm.full)
        if view is not None and view.owner == owner:
            self._views.move_to_end(frm.full)
            return view
        if view is not None:
            self._forget(view)
        view = ComponentSession(owner, frm, self)
        self._views[frm.full] = view
        if owner is not None:
            self.sessions.add(view)
        if len(self._views) > MAX_VIEWS:
            for stale in [v for v in self._views.values() if not v.rooms][:len(self._views) // 10]:
                self._forget(stale)
        return view

    def _forget(self, view: ComponentSession) -> None:
        if self._views.get(view.jid.full) is view:
            del self._views[view.jid.full]
        self.sessions.remove(view)

    def _attach_home(self, jid: str, identity: IdentityInfo) -> ComponentSession:
        old = self._homes.pop(jid, None)
        if old is not None:
            self.sessions.remove(old)
        home = ComponentSession(identity, JID(jid), self, available=True)
        self._homes[jid] = home
        self.sessions.add(home)
        return home

    def _detach(self, jid: str) -> None:
        home = self._homes.pop(jid, None)
        if home is not None:
            self.sessions.remove(home)
        for view in [v for v in self._views.values() if v.jid.bare == jid]:
            self.gateway.room.leave(view)
            self._forget(view)
        for key in [k for k in self._pushed if k[0] == jid]:
            del self._pushed[key]

    # --- from the server's users ---------------------------------------------------------

    def _on_message(self, conn: ComponentSession, el: ET.Element) -> None:
        if conn.owner is None:
            if el.get("type") == "error":
                return
            raise self._not_registered()
        self.gateway.on_message(conn, el)

    def _on_presence(self, conn: ComponentSession, el: ET.Element, to: JID) -> None:
        ptype = el.get("type", "")
        if ptype == "unavailable" and conn.jid.resource:
            self.gateway.room.leave(conn)
            self._forget(conn)
            return
        if conn.owner is None:
            return  # nothing to say to someone who has not registered
        if to.full == self.domain:
            self._presence_to_gateway(conn, ptype)
            return
        self.gateway.on_presence(conn, el)

    def _presence_to_gateway(self, conn: ComponentSession, ptype: str) -> None:
        if ptype == "subscribe":
            self._presence(conn.bare, "subscribed")
            self._presence(conn.bare, "")
        elif ptype == "probe":
            self._presence(conn.jid.full, "")
        elif ptype == "" and conn.jid.resource:
            self._presence(conn.jid.full, "")
            self.gateway.roster.initial_presence(conn)

    def _presence(self, to: str, ptype: str, frm: str | None = None) -> None:
        presence = ET.Element(_C + "presence", {"from": frm or self.domain, "to": to})
        if ptype:
            presence.set("type", ptype)
        self.send(presence)

    def _on_iq(self, conn: ComponentSession, el: ET.Element, to: JID) -> None:
        children = list(el)
        payload = children[0] if len(children) == 1 else None
        if payload is not None and payload.tag == _REG + "query" and to.full == self.domain:
            self._spawn(self._on_register(conn, el, payload))
            return
        if conn.owner is None and el.get("type") in ("get", "set"):
            ns = payload.tag[1:].split("}")[0] if payload is not None else ""
            if to.full != self.domain or ns not in _UNREGISTERED_IQS:
                raise self._not_registered()
        self.iq.handle(conn, el)

    def _not_registered(self) -> XmppError:
        return XmppError("registration-required",
                         f"register with the gateway {self.domain} first (your client's "
                         "service discovery: Register)", "auth")

    # --- in-band registration (XEP-0077) --------------------------------------------------

    async def _on_register(self, conn: ComponentSession, iq: ET.Element,
                           query: ET.Element) -> None:
        user = conn.jid
        try:
            if iq.get("type") == "get":
                reply = self._registration_form(user.bare)
                linked = None
            elif iq.get("type") == "set":
                linked = await self._registration_set(user.bare, query)
                reply = new_iq("result", iq.get("id", ""))
            else:
                return
        except Exception as exc:
            self.send(error_reply("iq", user.full, self.domain, iq.get("id", ""),
                                  stanza_error_for(exc)))
            return
        reply["id"] = iq.get("id", "")
        reply["to"] = user.full
        reply["from"] = self.domain
        self.send(reply)
        if linked is not None:
            self._welcome(user.bare, linked)

    def _registration_form(self, bare: str) -> ElementBase:
        reply = new_iq("result", "")
        query = ET.SubElement(reply.xml, _REG + "query")
        address = self.links.address_for(bare)
        identity = self._identity(address) if address else None
        if identity is not None:
            ET.SubElement(query, _REG + "registered")
            ET.SubElement(query, _REG + "nick").text = identity.nick
            ET.SubElement(query, _REG + "username").text = identity.username
            return reply
        ET.SubElement(query, _REG + "instructions").text = (
            "Give a nickname to get a new ParanoIM identity (only your contacts see it). "
            "To use an identity you already have, give its username and XMPP password "
            "from the ParanoIM web page instead.")
        for name in ("nick", "username", "password"):
            ET.SubElement(query, _REG + name)
        return reply

    async def _registration_set(self, bare: str, query: ET.Element) -> IdentityInfo | None:
        if query.find(_REG + "remove") is not None:
            address = self.links.unlink(bare)
            if address is None:
                raise XmppError("registration-required", "you are not registered here", "auth")
            self._detach(bare)
            self._presence(bare, "unsubscribed")
            self._presence(bare, "unavailable")
            log.info("%s unregistered from the gateway", bare)
            return None
        username = (query.findtext(_REG + "username") or "").strip()
        password = query.findtext(_REG + "password") or ""
        nick = " ".join((query.findtext(_REG + "nick") or "").split())
        current = self.links.address_for(bare)
        identity: IdentityInfo | None
        if username:
            identity = self.service.check_login(username, password)
            if identity is None:
                raise XmppError("not-authorized", "wrong username or XMPP password of the "
                                "ParanoIM identity (see the web page)", "auth")
        elif current is not None and (identity := self._identity(current)) is not None:
            if nick and nick != identity.nick:
                identity = self.service.rename_identity(identity.address, nick)
        else:
            identity = await self.service.create_identity(nick or JID(bare).local or "me")
        try:
            self.links.link(bare, identity.address)
        except LinkConflictError as exc:
            raise XmppError("conflict", str(exc)) from None
        self._attach_home(bare, identity)
        log.info("%s linked to identity %s", bare, identity.fingerprint)
        return identity

    def _welcome(self, bare: str, identity: IdentityInfo) -> None:
        """Put the gateway, the bot and the identity's contacts into the user's roster."""
        if self._may_set_roster(bare):
            self._roster_set(bare, self.domain, "ParanoIM", "both")
            self._roster_set(bare, self.domains.bot, "ParanoIM bot", "both")
            self._presence(bare, "")
        else:
            self._presence(bare, "subscribe")
        for contact in self.service.contacts(identity.address):
            self.push_contact(identity.address, contact, None)

    # --- roster: privileged sets or subscription requests ----------------------------------

    def _on_privilege(self, server: str, el: ET.Element) -> None:
        perms = {p.get("access", ""): p.get("type", "")
                 for p in el.iter(f"{{{PRIVILEGE_NS}}}perm")}
        self.privileges[server] = perms
        log.info("privileges granted by %s: %s", server, perms)
        if self._may_set_roster(f"x@{server}"):
            for jid, address in self.links.all():
                if JID(jid).domain == server and self._identity(address) is not None:
                    for contact in self.service.contacts(address):
                        self.push_contact(address, contact, None)

    def _may_set_roster(self, jid: str) -> bool:
        return self.privileges.get(JID(jid).domain, {}).get("roster") in ("set", "both")

    def push_contact(self, owner: str, contact: ContactInfo | None, removed: str | None) -> None:
        jid = self.links.jid_for(owner)
        if jid is None:
            return
        if contact is not None:
            target = self.domains.contact(contact.address)
            state = ("both" if contact.state is ContactState.ACCEPTED else "none",
                     contact.petname)
        elif removed is not None:
            target, state = self.domains.contact(removed), ("remove", "")
        else:
            return
        if self._pushed.get((jid, target)) == state:
            return
        self._pushed[(jid, target)] = state
        subscription, name = state
        if self._may_set_roster(jid):
            self._roster_set(jid, target, name, subscription)
        elif subscription == "both":
            self._presence(jid, "subscribe", frm=target)
        elif subscription == "remove":
            self._presence(jid, "unsubscribed", frm=target)
            self._presence(jid, "unavailable", frm=target)

    def _roster_set(self, jid: str, item_jid: str, name: str, subscription: str) -> None:
        ident = f"roster-{next(self._ids)}"
        iq = new_iq("set", ident)
        iq["from"] = self.domain
        iq["to"] = jid
        query = ET.SubElement(iq.xml, f"{{{ROSTER_NS}}}query")
        item = ET.SubElement(query, f"{{{ROSTER_NS}}}item",
                             {"jid": item_jid, "subscription": subscription})
        if name and subscription != "remove":
            item.set("name", name)
        future: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        future.add_done_callback(
            lambda f: self._roster_answer(f, jid, item_jid, subscription))
        self.send(iq)

    def _roster_answer(self, future: asyncio.Future[ET.Element], jid: str, item_jid: str,
                       subscription: str) -> None:
        if future.cancelled() or future.result().get("type") != "error":
            return
        log.warning("privileged roster set for %s refused; asking by presence instead", jid)
        self.privileges.get(JID(jid).domain, {}).pop("roster", None)
        if subscription == "both":
            self._presence(jid, "subscribe", frm=item_jid)


__all__ = ["DEFAULT_PORT", "Component", "ComponentError", "ComponentSession", "to_client_ns"]
