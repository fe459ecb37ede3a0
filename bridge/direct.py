"""Direct delivery (kkv-style, docs/kkv-api.md) as the daemon wires it.

Receiving: the node's HTTP app also serves the kkv endpoints. Every envelope
delivered there is handed to the node (which stores and spreads it as if it came
by gossip) and then leaves the RAM inbox, taken or refused, so the inbox cap
bounds what is in transit, not a mailbox. What is logged of it is at DEBUG: at
the default level the log shows no single message. The read endpoints answer
this machine only; with Tor they are served on a loopback-only site of their own
(``LocalInbox``), since the onion forwards every remote client from 127.0.0.1 to
the node's port.

Sending: the service delivers to a contact's announced endpoint through one
shared HTTP session (``DirectSender``; through Tor's SOCKS port with Tor on) and
announces this node's own endpoint only when others can reach it: the onion
with Tor, or the configured ``announce`` (``--advertise``) address.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bridge.config import Config
from bridge.core.envelope import envelope_id
from bridge.core.errors import ParanoimError
from bridge.core.peers import is_loopback_host
from bridge.net.kkv import KkvInbox, KkvServer, KkvSettings, add_kkv_routes
from bridge.net.kkv_client import DEFAULT_TIMEOUT, DirectDeliveryError, deliver_direct
from bridge.net.node import Node
from bridge.net.tor import outbound_session
from bridge.net.workers import WorkerPool

log = logging.getLogger("bridge.daemon")
DIRECT_TIMEOUT = 20.0  # a whole delivery on a clear network; through Tor kkv_client's 120 s


def points_here(url: str) -> bool:
    """Whether ``url`` names this machine (a loopback or unspecified address)."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


class DirectInbox:
    """The kkv endpoints on the node's app, and the hand-off of what arrives there."""

    def __init__(self, cfg: Config, node: Node) -> None:
        self.node = node
        settings = KkvSettings(envelope_base_bits=cfg.difficulty)
        # With Tor the read endpoints go on a loopback-only site (LocalInbox) instead.
        self.kkv: KkvServer = add_kkv_routes(node.http_app, KkvInbox(settings.max_messages),
                                             settings, local=not cfg.tor)
        if cfg.tor:
            self.kkv.mark_onion_port(cfg.p2p_port)
        self.kkv.inbox.on_envelope(self._handoff)
        self.received = 0  # envelopes delivered here directly and handed to the node
        self.refused = 0  # delivered here but refused by the node (and dropped)

    async def _handoff(self, raw: bytes) -> None:
        eid = envelope_id(raw)
        try:
            await self.node.publish(raw)
        except ParanoimError as exc:
            # Refused by the node (expired since the endpoint checked it, say): nothing
            # will ever take it, so it must not hold one of the inbox's few slots.
            self.refused += 1
            log.debug("a directly delivered envelope %s was refused by the node: %s",
                      eid.hex()[:12], exc)
            return
        finally:
            self.kkv.inbox.remove(eid)
        self.received += 1
        log.debug("direct delivery: envelope %s received and handed to the node",
                  eid.hex()[:12])


class LocalInbox:
    """With Tor: the inbox's read endpoints on a loopback-only port of their own."""

    name = "local inbox endpoints"

    def __init__(self, inbox: DirectInbox) -> None:
        self.inbox = inbox
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.add_routes(self.inbox.kkv.routes(public=False))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=3)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def own_endpoint(cfg: Config, onion: str) -> str:
    """The direct-delivery URL announced to contacts; "" when others cannot reach us."""
    if onion:
        return f"http://{onion}"
    if cfg.announce:
        return f"http://{cfg.announce}"
    return ""


class DirectSender:
    """The one HTTP session the service delivers to contacts' endpoints through."""

    name = "direct-delivery session"

    def __init__(self, cfg: Config, pool: WorkerPool) -> None:
        self.cfg = cfg
        self.pool = pool
        self.session: aiohttp.ClientSession | None = None
        # A network on one machine listens on loopback itself, and may deliver there.
        self._local_net = (is_loopback_host(cfg.p2p_listen)
                           or is_loopback_host(cfg.announce.rpartition(":")[0]))

    async def start(self) -> None:
        cfg = self.cfg
        if cfg.tor:
            socks_host, _, socks_port = cfg.tor_socks.rpartition(":")
            self.session = outbound_session((socks_host, int(socks_port)))
        else:
            self.session = outbound_session(timeout=aiohttp.ClientTimeout(sock_connect=10))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, endpoint: str, raw: bytes) -> None:
        cfg = self.cfg
        if self.session is None:
            raise DirectDeliveryError("direct delivery has stopped")
        if not cfg.tor and not self._local_net and points_here(endpoint):
            # A contact's endpoint must not make this daemon call services on this machine.
            raise DirectDeliveryError(f"the endpoint {endpoint} points at this machine; "
                                      "not used by a node that listens on the network")
        await deliver_direct(self.session, endpoint, raw, solver=self.pool.solve_pow,
                             tor=cfg.tor, timeout=DEFAULT_TIMEOUT if cfg.tor else DIRECT_TIMEOUT)
