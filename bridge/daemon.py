"""The daemon: one process holding the worker pool, the P2P node, the service,
the XMPP faces (the embedded listener and/or an XEP-0114 component), the web UI
and the control channel.

Start order is pool → node → service → XMPP → component → web UI → control →
runtime file,
and stop is the reverse: the faces stop taking requests before the service and
the node go, so nothing acknowledged to a client is dropped mid-way, and the
node (which fsyncs its SQLite store) is stopped last but for the pool. Ports
are checked before anything starts, so a busy port fails fast with a message
naming the option that changes it.

A build without the P2P node or the XMPP listener says so at start and runs
without it (the node then is ``LocalNode``). With Tor, the onion service is made
before the node binds, so the node can tell peers its onion address.

Direct delivery (docs/kkv-api.md): the node's HTTP app also serves the kkv-style
endpoints. Every envelope delivered there is handed to the node (which stores and
spreads it as if it came by gossip) and then leaves the RAM inbox, so the inbox
cap bounds what is in transit, not a mailbox. The read endpoints answer this
machine only; with Tor they are served on a loopback-only site of their own,
since the onion forwards every remote client from 127.0.0.1 to the node's port.
The service delivers to a contact's announced endpoint through one shared HTTP
session (through Tor's SOCKS port with Tor on) and announces this node's own
endpoint only when others can reach it: the onion with Tor, or the configured
``announce`` (``--advertise``) address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import secrets
import signal
import socket
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bridge import __version__
from bridge.config import Config, check_run, component_secret
from bridge.control import (
    AlreadyRunningError,
    DataDirLock,
    Operations,
    remove_runtime,
    running_daemon,
    serve_control,
    write_runtime,
)
from bridge.core.envelope import envelope_id
from bridge.core.errors import ParanoimError, UserError
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.paths import CONTROL_SOCKET, ensure_private_dir
from bridge.service import Service
from bridge.store.keystore import Keystore, OnceKeystore, write_private

if TYPE_CHECKING:
    from bridge.net.kkv import KkvServer
    from bridge.net.tor import TorController
    from bridge.store.seen import SQLiteSeen

log = logging.getLogger(__name__)
STOP_STEP_TIMEOUT = 10.0
ONION_KEY_FILE = "onion.key"
DIRECT_TIMEOUT = 20.0  # a whole delivery on a clear network; through Tor kkv_client's 120 s


class PortInUseError(UserError):
    """A port the daemon needs is taken."""


def _missing(part: str, exc: ImportError) -> str:
    name = exc.name or ""
    if name.split(".")[0] in ("bridge", "webui"):
        return f"the {part} is not part of this build"
    return f"the {part} is off: the Python package '{name}' is missing (pip install -e .)"


def check_port_free(host: str, port: int, what: str, option: str) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise port_error(exc, host, port, what, option) from None


def port_error(exc: OSError, host: str, port: int, what: str, option: str) -> UserError:
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(f"port {port} for the {what} is already in use on {host}; "
                              f"stop the program using it or choose another port with {option}")
    if exc.errno == errno.EACCES:
        return PortInUseError(f"no permission to listen on port {port} for the {what}; "
                              f"choose a port above 1023 with {option}")
    return UserError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}")


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _points_here(url: str) -> bool:
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


@dataclass
class Daemon:
    cfg: Config
    data_dir: Path
    passphrase: str | None = None
    out: Callable[[str], None] = print
    open_browser: bool = False
    tray: bool = False
    pool_workers: int | None = None
    # filled by start()
    lock: DataDirLock | None = None
    keystore: Keystore | None = None
    pool: WorkerPool | None = None
    node: Any = None
    service: Service | None = None
    xmpp: Any = None
    web_runner: web.AppRunner | None = None
    control_runner: web.AppRunner | None = None
    access_token: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    web_url: str = ""
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)
    paused_peers: list[str] | None = None
    store: Any = None  # the node's envelope store
    seen: SQLiteSeen | None = None  # delivered-message ids, with storage = "sqlite"
    tor: TorController | None = None  # the onion lives as long as this connection
    onion: str = ""
    component: Any = None  # the XEP-0114 component, when configured
    kkv: KkvServer | None = None  # the direct-delivery endpoints on the node's app
    kkv_local_runner: web.AppRunner | None = None  # with Tor: the read endpoints, loopback
    endpoint: str = ""  # the direct-delivery URL announced to contacts ("" = none)
    direct_session: aiohttp.ClientSession | None = None
    direct_received: int = 0  # envelopes delivered here directly and handed to the node
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _started_at: float = 0.0
    _warm: asyncio.Future[None] | None = None

    # --- start ---------------------------------------------------------------------

    async def start(self) -> None:
        t0 = time.monotonic()
        ensure_private_dir(self.data_dir)
        self._take_lock()
        self.access_token = secrets.token_urlsafe(24)
        try:
            await self._start_parts()
        except BaseException:
            await self.stop()
            raise
        self._started_at = time.time()
        log.info("ready in %.2f s", time.monotonic() - t0)

    def _take_lock(self) -> None:
        lock = DataDirLock(self.data_dir)
        deadline = time.monotonic() + 10
        while not lock.try_acquire():
            rt = running_daemon(self.data_dir)
            if rt is not None:
                raise AlreadyRunningError(
                    f"ParanoIM already runs for {self.data_dir} (pid {rt.pid}); stop it with "
                    "`paranoim stop` or use another --data-dir")
            if time.monotonic() > deadline:
                raise AlreadyRunningError(f"another ParanoIM process holds {self.data_dir}; "
                                          "stop it or use another --data-dir")
            time.sleep(0.05)
        self.lock = lock
        remove_runtime(self.data_dir)  # any runtime file now is a leftover

    async def _start_parts(self) -> None:
        cfg = self.cfg
        check_run(cfg)
        if cfg.xmpp_listener:
            check_port_free("127.0.0.1", cfg.xmpp_port, "XMPP listener", "--xmpp-port")
        check_port_free("127.0.0.1", cfg.web_port, "web UI", "--web-port")
        check_port_free(cfg.p2p_listen, cfg.p2p_port, "P2P node", "--p2p-port")

        t0 = time.monotonic()

        def phase(what: str) -> None:
            log.debug("%s after %.3f s", what, time.monotonic() - t0)

        self.keystore = OnceKeystore(self.data_dir, self.passphrase)
        await asyncio.to_thread(self.keystore.load)
        phase("key file loaded")
        self.pool = WorkerPool(self.pool_workers)
        # The workers start (a second or two of process spawning) while the rest does.
        warm = self._warm = asyncio.ensure_future(self.pool.warm_up())

        advertise, connector = await self._start_tor()
        cfg = self.cfg
        self.node = self._make_node(advertise, connector)
        try:
            await self.node.start()
        except OSError as exc:
            raise port_error(exc, cfg.p2p_listen, cfg.p2p_port, "P2P node", "--p2p-port") from None
        self.ports["p2p"] = int(getattr(self.node, "port", 0) or cfg.p2p_port)
        phase("P2P node listening")
        await self._start_kkv_local()

        self.service = Service(self.keystore, self.node, self.pool, base_bits=cfg.difficulty,
                               storage=cfg.storage, tor="on" if cfg.tor else "off",
                               chat_states=cfg.chat_states, **self._seen())
        # Invitations carry this node (when others can reach it) and the bootstrap peers.
        self.service.bootstrap_peers = list(dict.fromkeys(
            p for p in (advertise, *cfg.peers) if p))[:8]
        self._wire_direct()
        await self.service.start(deliver=False)
        phase("service started")
        await self._start_xmpp()
        phase("XMPP listener listening")
        await self._start_component()
        await self._start_web()
        phase("web UI listening")
        # Only now that the faces listen are arrivals handed over (stored ones first).
        self.service.start_delivery()
        await warm
        phase("worker pool warm")
        ops = Operations(self.service, domain=cfg.xmpp_domain, status=self.status,
                         stop=self.request_stop)
        self.control_runner, control = await serve_control(ops, self.access_token,
                                                           self.data_dir)
        write_runtime(self.data_dir, {**self.status(), "control": control,
                                      "access_token": self.access_token})

    def _seen(self) -> dict[str, Any]:
        if self.cfg.storage != "sqlite":
            return {}
        try:
            from bridge.store.seen import SQLiteSeen
        except ImportError:
            return {}
        self.seen = SQLiteSeen(self.data_dir / "delivered.db")
        return {"seen": self.seen}

    def _make_node(self, advertise: str, connector: Any) -> Any:
        cfg = self.cfg
        try:
            from bridge.net.node import Node, NodeConfig
        except ImportError as exc:
            self.notes.append(_missing("P2P node", exc) + ": messages stay on this machine")
            local = LocalNode(cfg.difficulty)
            for p in cfg.peers:
                local.add_peer(p)
            return local
        if cfg.storage == "sqlite":
            from bridge.store.sqlite import SQLiteStore

            store: Any = SQLiteStore(str(self.data_dir / "envelopes.db"))
        else:
            from bridge.store.memory import MemoryStore

            store = MemoryStore()
        self.store = store
        host = "127.0.0.1" if cfg.tor else cfg.p2p_listen  # with Tor, only the onion reaches it
        node_cfg = NodeConfig(host=host, port=cfg.p2p_port, advertise=advertise,
                              base_bits=cfg.difficulty, bootstrap=list(cfg.peers),
                              connector=connector)
        node = Node(node_cfg, store=store)
        self._mount_kkv(node)
        return node

    # --- direct delivery (kkv-style) ----------------------------------------------------

    def _mount_kkv(self, node: Any) -> None:
        from bridge.net.kkv import KkvInbox, KkvSettings, add_kkv_routes

        cfg = self.cfg
        settings = KkvSettings(envelope_base_bits=cfg.difficulty)
        # With Tor the onion forwards every remote client from 127.0.0.1 to this app:
        # the read endpoints go on a loopback-only site (_start_kkv_local) instead.
        self.kkv = add_kkv_routes(node.http_app, KkvInbox(settings.max_messages), settings,
                                  local=not cfg.tor)
        if cfg.tor:
            self.kkv.mark_onion_port(cfg.p2p_port)
        self.kkv.inbox.on_envelope(self._handoff)

    async def _handoff(self, raw: bytes) -> None:
        """A directly delivered envelope: to the node, then out of the RAM inbox."""
        eid = envelope_id(raw)
        try:
            await self.node.publish(raw)
        except ParanoimError as exc:
            # Kept in the inbox, where the local read endpoints show it.
            log.warning("a directly delivered envelope %s was refused by the node: %s",
                        eid.hex()[:12], exc)
            return
        if self.kkv is not None:
            self.kkv.inbox.remove(eid)
        self.direct_received += 1
        log.info("direct delivery: envelope %s received and handed to the node",
                 eid.hex()[:12])

    async def _start_kkv_local(self) -> None:
        if self.kkv is None or not self.cfg.tor:
            return
        app = web.Application(client_max_size=64 * 1024)
        app.add_routes(self.kkv.routes(public=False))
        self.kkv_local_runner = web.AppRunner(app, access_log=None, shutdown_timeout=3)
        await self.kkv_local_runner.setup()
        site = web.TCPSite(self.kkv_local_runner, "127.0.0.1", 0)
        await site.start()
        self.ports["kkv_local"] = int(self.kkv_local_runner.addresses[0][1])

    def _wire_direct(self) -> None:
        """The service's sender for contacts' endpoints, and the endpoint it announces."""
        from bridge.net.kkv_client import DEFAULT_TIMEOUT, DirectDeliveryError, deliver_direct
        from bridge.net.tor import outbound_session

        cfg = self.cfg
        assert self.service is not None and self.pool is not None
        if self.kkv is not None:  # only a real node serves the endpoints
            if self.onion:
                self.endpoint = f"http://{self.onion}"
            elif cfg.announce:
                self.endpoint = f"http://{cfg.announce}"
        self.service.endpoint = self.endpoint
        if cfg.tor:
            socks_host, _, socks_port = cfg.tor_socks.rpartition(":")
            session = outbound_session((socks_host, int(socks_port)))
            timeout = DEFAULT_TIMEOUT
        else:
            session = outbound_session(timeout=aiohttp.ClientTimeout(sock_connect=10))
            timeout = DIRECT_TIMEOUT
        self.direct_session = session
        solve = self.pool.solve_pow
        local_net = (_is_loopback(cfg.p2p_listen)
                     or _is_loopback(cfg.announce.rpartition(":")[0]))

        async def direct(endpoint: str, raw: bytes) -> None:
            if not cfg.tor and not local_net and _points_here(endpoint):
                # A contact's endpoint must not make this daemon call services on
                # this machine; a network on one machine listens on loopback itself.
                raise DirectDeliveryError(f"the endpoint {endpoint} points at this machine; "
                                          "not used by a node that listens on the network")
            await deliver_direct(session, endpoint, raw, solver=solve, tor=cfg.tor,
                                 timeout=timeout)

        self.service.direct = direct

    async def _start_tor(self) -> tuple[str, Any]:
        """(onion host:port to advertise, connector factory) — or ("", None) without Tor."""
        cfg = self.cfg
        if not cfg.tor:
            return cfg.announce, None
        from bridge.net.tor import TorController, socks_connector

        socks_host, _, socks_port = cfg.tor_socks.rpartition(":")
        ctl_host, _, ctl_port = cfg.tor_control.rpartition(":")
        self.tor = await TorController.connect(ctl_host, int(ctl_port))
        if not cfg.p2p_port:  # the onion must know its target before the node binds
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.cfg = cfg = replace(cfg, p2p_port=int(s.getsockname()[1]))
        # The onion's key is kept (0600) so the address in invitations survives restarts.
        key_file = self.data_dir / ONION_KEY_FILE
        key = key_file.read_text().strip() if key_file.exists() else None
        onion = await self.tor.add_onion(cfg.p2p_port, virtual_port=cfg.p2p_port, key=key,
                                         keep_key=key is None)
        if key is None and onion.private_key:
            write_private(key_file, onion.private_key.encode())
        self.onion = f"{onion.address}:{onion.virtual_port}"
        return self.onion, lambda: socks_connector(socks_host, int(socks_port))

    async def _start_xmpp(self) -> None:
        cfg = self.cfg
        if not cfg.xmpp_listener:
            return
        try:
            from bridge.xmpp.c2s import C2SServer
        except ImportError as exc:
            self.notes.append(_missing("XMPP listener", exc) + ": no Jabber client can connect")
            return
        assert self.service is not None
        self.xmpp = C2SServer(self.service, "127.0.0.1", cfg.xmpp_port, self.data_dir,
                              domain=cfg.xmpp_domain)
        try:
            await self.xmpp.start()
        except OSError as exc:
            raise port_error(exc, "127.0.0.1", cfg.xmpp_port, "XMPP listener",
                             "--xmpp-port") from None
        self.ports["xmpp"] = int(getattr(self.xmpp, "port", 0) or cfg.xmpp_port)
        self.fingerprint = str(getattr(self.xmpp, "fingerprint", ""))
        settings = {"host": "127.0.0.1", "port": self.ports["xmpp"], "domain": cfg.xmpp_domain,
                    "fingerprint": self.fingerprint, "tls": "starttls"}
        if hasattr(self.xmpp, "settings"):
            settings = dict(self.xmpp.settings())
        self.service.set_xmpp_settings(settings)

    async def _start_component(self) -> None:
        cfg = self.cfg
        if not cfg.component_domain:
            return
        from bridge.xmpp.component import Component

        assert self.service is not None
        host, _, port = cfg.component_server.rpartition(":")
        self.component = Component(self.service, cfg.component_domain, host.strip("[]"),
                                   int(port), component_secret(cfg), self.data_dir,
                                   server_domains=cfg.component_user_domains or None)
        await self.component.start()
        if not cfg.xmpp_listener:
            self.service.set_xmpp_settings(dict(self.component.settings()))

    async def _start_web(self) -> None:
        try:
            from webui.app import create_app
        except ImportError as exc:
            self.notes.append(_missing("web UI", exc))
            return
        assert self.service is not None
        # Bind first: the app must know its port (for the Host allowlist) before it exists.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.cfg.web_port))
        except OSError as exc:
            sock.close()
            raise port_error(exc, "127.0.0.1", self.cfg.web_port, "web UI",
                             "--web-port") from None
        port = int(sock.getsockname()[1])
        hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        app = create_app(self.service, access_token=self.access_token, allowed_hosts=hosts)
        self.web_runner = web.AppRunner(app, access_log=None, shutdown_timeout=3)
        await self.web_runner.setup()
        await web.SockSite(self.web_runner, sock).start()
        self.ports["web"] = port
        self.web_url = f"http://127.0.0.1:{port}/?token={self.access_token}"

    # --- what other commands see --------------------------------------------------------

    def status(self) -> dict[str, Any]:
        doc = {"pid": os.getpid(), "version": __version__, "data_dir": str(self.data_dir),
               "started": self._started_at or time.time(), "ports": dict(self.ports),
               "web_url": self.web_url, "xmpp_domain": self.cfg.xmpp_domain,
               "fingerprint": self.fingerprint, "paused": self.paused_peers is not None,
               "notes": list(self.notes), "direct": self.direct_status()}
        if self.component is not None:
            doc["component"] = {**self.component.settings(),
                                "connected": self.component.connected.is_set()}
        return doc

    def direct_status(self) -> dict[str, Any]:
        """Direct delivery at a glance: what is announced, sent, fallen back, received."""
        stats = self.service.direct_stats if self.service is not None else {}
        known = 0
        if self.keystore is not None and self.keystore.doc is not None:
            known = sum(1 for rec in self.keystore.doc.identities for c in rec.contacts
                        if c.endpoint)
        return {"endpoint": self.endpoint, "sent": stats.get("direct", 0),
                "fallback": stats.get("fallback", 0), "received": self.direct_received,
                "inbox": len(self.kkv.inbox) if self.kkv is not None else 0,
                "contacts_with_endpoint": known}

    def ready_lines(self) -> list[str]:
        cfg = self.cfg
        lines = [f"ParanoIM {__version__} (pid {os.getpid()}), data in {self.data_dir}"]
        if "xmpp" in self.ports:
            lines.append(f"  XMPP   127.0.0.1:{self.ports['xmpp']}  domain {cfg.xmpp_domain}, "
                         f"STARTTLS, certificate SHA-256 {self.fingerprint or '?'}")
        if cfg.chat_states:
            lines.append("  Chat states on: accepted contacts see when you type")
        listen = "127.0.0.1" if cfg.tor else cfg.p2p_listen
        lines.append(f"  P2P    {listen}:{self.ports.get('p2p', cfg.p2p_port)}  "
                     f"storage {cfg.storage}, Tor {'on' if cfg.tor else 'off'}, "
                     f"difficulty {cfg.difficulty} bits")
        if self.onion:
            lines.append(f"  Onion  {self.onion}")
        if self.kkv is not None:
            if self.endpoint:
                lines.append(f"  Direct {self.endpoint}  announced to contacts for direct "
                             "delivery")
            else:
                lines.append("  Direct not announced: others cannot reach this node (give "
                             "--advertise HOST:PORT or use --tor); messages arrive by gossip")
        if "kkv_local" in self.ports:
            lines.append(f"  Inbox  127.0.0.1:{self.ports['kkv_local']}  direct-delivery "
                         "read endpoints, this machine only")
        if self.component is not None:
            c = self.component
            lines.append(f"  Component {c.domain} on {cfg.component_server}  users of "
                         f"{', '.join(c.server_domains)} register with it")
        if self.web_url:
            lines.append(f"  Web UI {self.web_url}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("Ready. Press Ctrl-C to stop.")
        return lines

    # --- run and stop -------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def pause_network(self, paused: bool) -> None:
        """Drop every peer link (remembering the peers) or bring them back."""
        if self.node is None:
            return
        if hasattr(self.node, "pause") and hasattr(self.node, "resume"):
            (self.node.pause if paused else self.node.resume)()
            self.paused_peers = [] if paused else None
            return
        if paused and self.paused_peers is None:
            self.paused_peers = [str(p.get("address", "")) for p in self.node.peers()]
            for p in self.paused_peers:
                with contextlib.suppress(UserError, ValueError, KeyError):
                    self.node.remove_peer(p)
        elif not paused and self.paused_peers is not None:
            for p in self.paused_peers:
                with contextlib.suppress(UserError, ValueError):
                    self.node.add_peer(p)
            self.paused_peers = None

    async def run(self) -> None:
        """Start, print the ready lines, serve until SIGINT/SIGTERM, stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            tray_stop = self._start_tray() if self.tray else None
            for line in self.ready_lines():
                self.out(line)
            if self.open_browser and self.web_url:
                await asyncio.to_thread(webbrowser.open, self.web_url)
            await self._stop.wait()
            self.out("Stopping…")
            if tray_stop:
                tray_stop()
        finally:
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        self.out("Stopped.")

    def _start_tray(self) -> Callable[[], None] | None:
        from bridge.tray import start_tray

        stop = start_tray(self, asyncio.get_running_loop())
        if stop is None:
            self.notes.append("no tray icon: it needs paranoim[tray] and a desktop session")
        return stop

    async def stop(self) -> None:
        async def step(what: str, coro: Any) -> None:
            try:
                await asyncio.wait_for(coro, STOP_STEP_TIMEOUT)
            except Exception:
                log.exception("stopping the %s failed", what)

        if self.control_runner is not None:
            await step("control channel", self.control_runner.cleanup())
            self.control_runner = None
        if self.component is not None:
            await step("XMPP component", self.component.close())
            self.component = None
        if self.xmpp is not None:
            await step("XMPP listener", self.xmpp.close())
            self.xmpp = None
        if self.web_runner is not None:
            await step("web UI", self.web_runner.cleanup())
            self.web_runner = None
        if self.service is not None:
            await step("service", self.service.stop())
            self.service = None
        if self.direct_session is not None:
            await step("direct-delivery session", self.direct_session.close())
            self.direct_session = None
        if self.seen is not None:
            self.seen.close()  # after the service: it records deliveries until it stops
            self.seen = None
        if self.kkv_local_runner is not None:
            await step("local inbox endpoints", self.kkv_local_runner.cleanup())
            self.kkv_local_runner = None
        if self.node is not None:
            await step("P2P node", self.node.stop())
            self.node = None
        if self.store is not None and hasattr(self.store, "close"):
            self.store.close()  # the node has stopped writing: checkpoint and close
        self.store = None
        if self.tor is not None:
            await step("Tor control connection", self.tor.close())
            self.tor = None
        if self._warm is not None and not self._warm.done():
            self._warm.cancel()
            await asyncio.gather(self._warm, return_exceptions=True)
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.lock is not None:
            remove_runtime(self.data_dir)
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / CONTROL_SOCKET).unlink()
            self.lock.release()
            self.lock = None

