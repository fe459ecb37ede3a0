"""The daemon: one process holding the worker pool, the P2P node, the service,
the XMPP faces (the embedded listener and/or an XEP-0114 component), the web UI
and the control channel.

It is an ordered list of parts (``bridge.parts``) entered on one exit stack:
the data directory's lock → worker pool → (Tor's onion) → store → node →
(loopback inbox) → (message archive) → direct-delivery session → service →
XMPP listener → component → web UI → (arrivals handed over) → control channel →
runtime file. Stopping is that list in reverse, by construction: the faces stop
taking requests before the service and the node go, so nothing acknowledged to
a client is dropped mid-way, and the node's store (which fsyncs with SQLite)
closes once the node has stopped writing. A failure half-way through starting
stops what had started, in the same order. Ports are checked before anything
starts, so a busy port fails fast with a message naming the option that
changes it. With Tor, the onion service is made before the node binds, so the
node can tell peers its onion address.

The pieces live beside it: ``bridge.ports`` (port checks), ``bridge.direct``
(direct delivery), ``bridge.faces`` (listener, component, web UI) and
``bridge.status`` (what ``paranoim run`` prints and ``paranoim status`` shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import time
import webbrowser
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from bridge import status as status_text
from bridge.config import Config, check_run
from bridge.control import (
    ControlServer,
    DataDirLock,
    remove_runtime,
    take_daemon_lock,
    write_runtime,
)
from bridge.core.depth import DepthRule
from bridge.core.errors import UserError
from bridge.direct import DirectInbox, DirectSender, LocalInbox, own_endpoint
from bridge.faces import ComponentFace, WebFace, XmppListener
from bridge.files import FileStore
from bridge.fileserver import FileServer
from bridge.net.carrying import Carrying
from bridge.net.node import Node, NodeConfig
from bridge.net.tor import TorController, socks_connector
from bridge.net.workers import WorkerPool
from bridge.operations import Naming, Operations
from bridge.parts import Parts, Step
from bridge.paths import ensure_private_dir
from bridge.ports import check_port_free, port_error
from bridge.service import Service
from bridge.store.archive import FILENAME as ARCHIVE_FILE
from bridge.store.archive import ArchiveFile
from bridge.store.index import Store
from bridge.store.keystore import OnceKeystore, write_private
from bridge.store.memory import DEFAULT_MAX_BYTES as DEFAULT_STORE_BYTES
from bridge.store.memory import MemoryStore
from bridge.store.seen import import_delivered_db
from bridge.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)
ONION_KEY_FILE = "onion.key"


class Pool:
    """The worker pool; its processes start (a second or two) while the rest does."""

    name = "worker pool"

    def __init__(self, workers: int | None) -> None:
        self.pool = WorkerPool(workers)
        self.warm: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self.warm = asyncio.ensure_future(self.pool.warm_up())

    async def stop(self) -> None:
        if self.warm is not None and not self.warm.done():
            self.warm.cancel()
            await asyncio.gather(self.warm, return_exceptions=True)
        self.pool.close()


class Onion:
    """Tor's control connection and this node's onion service, which lives as long as
    the connection. Its key is kept (0600) so invitations' address survives restarts."""

    name = "Tor control connection"

    def __init__(self, cfg: Config, data_dir: Path) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.tor: TorController | None = None
        self.address = ""  # host.onion:port
        self.p2p_port = cfg.p2p_port

    async def start(self) -> None:
        cfg = self.cfg
        ctl_host, _, ctl_port = cfg.tor_control.rpartition(":")
        self.tor = await TorController.connect(ctl_host, int(ctl_port))
        if not self.p2p_port:  # the onion must know its target before the node binds
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.p2p_port = int(s.getsockname()[1])
        key_file = self.data_dir / ONION_KEY_FILE
        key = key_file.read_text().strip() if key_file.exists() else None
        onion = await self.tor.add_onion(self.p2p_port, virtual_port=self.p2p_port, key=key,
                                         keep_key=key is None)
        if key is None and onion.private_key:
            write_private(key_file, onion.private_key.encode())
        self.address = f"{onion.address}:{onion.virtual_port}"

    async def stop(self) -> None:
        if self.tor is not None:
            await self.tor.close()

    def connector(self) -> aiohttp.BaseConnector:
        socks_host, _, socks_port = self.cfg.tor_socks.rpartition(":")
        return socks_connector(socks_host, int(socks_port))


class NetworkPause:
    """The tray's "Pause network": drop every peer link, remembering the peers."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.peers: list[str] | None = None  # remembered while paused

    def set(self, paused: bool) -> None:
        if paused and self.peers is None:
            self.peers = [str(p.get("address", "")) for p in self.node.peers()]
            for p in self.peers:
                with contextlib.suppress(UserError, ValueError, KeyError):
                    self.node.remove_peer(p)
        elif not paused and self.peers is not None:
            for p in self.peers:
                with contextlib.suppress(UserError, ValueError):
                    self.node.add_peer(p)
            self.peers = None


class Daemon:
    def __init__(self, cfg: Config, data_dir: Path, passphrase: str | None = None, *,
                 out: Callable[[str], None] = print, open_browser: bool = False,
                 tray: bool = False, pool_workers: int | None = None) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.passphrase = passphrase
        self.out = out
        self.open_browser = open_browser
        self.tray = tray
        self.pool_workers = pool_workers
        self.access_token = ""  # the web UI's
        self.control_token = ""  # the control channel's: a different secret
        self.started_at = 0.0
        self.notes: list[str] = []
        # the parts, each set once it is started (None: not running, or not configured)
        self.keystore: OnceKeystore | None = None
        self.node: Node | None = None
        self.service: Service | None = None
        self.carrying: Carrying | None = None  # [p2p] carry_mb_day: shards chosen by intake
        self.onion = ""
        self.endpoint = ""  # the direct-delivery URL announced to contacts ("" = none)
        self.inbox: DirectInbox | None = None
        self.local_inbox: LocalInbox | None = None
        self.xmpp: XmppListener | None = None
        self.component: ComponentFace | None = None
        self.web: WebFace | None = None
        self.file_server: FileServer | None = None
        self._pause: NetworkPause | None = None
        self._parts: Parts | None = None
        self._stop = asyncio.Event()

    # --- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        t0 = time.monotonic()
        parts = Parts()
        try:
            await self._start_parts(parts)
        except BaseException:
            await parts.close()
            raise
        self._parts = parts
        self.started_at = time.time()
        log.info("ready in %.2f s", time.monotonic() - t0)

    async def stop(self) -> None:
        parts, self._parts = self._parts, None
        if parts is not None:
            await parts.close()

    async def _start_parts(self, parts: Parts) -> None:
        cfg = self.cfg
        ensure_private_dir(self.data_dir)
        await parts.enter(self._lock_part())  # a second daemon is told so before ports
        check_run(cfg)
        if cfg.xmpp_listener:
            check_port_free("127.0.0.1", cfg.xmpp_port, "XMPP listener", "--xmpp-port")
        check_port_free("127.0.0.1", cfg.web_port, "web UI", "--web-port")
        check_port_free("127.0.0.1", cfg.upload_port, "file upload listener",
                        "[xmpp] upload_port")
        check_port_free(cfg.p2p_listen, cfg.p2p_port, "P2P node", "--p2p-port")
        self.access_token = secrets.token_urlsafe(24)
        self.control_token = secrets.token_urlsafe(24)

        keystore = self.keystore = OnceKeystore(self.data_dir, self.passphrase)
        await parts.step("key file loaded", asyncio.to_thread(keystore.load))
        await asyncio.to_thread(import_delivered_db, self.data_dir, keystore, int(time.time()))
        pool = Pool(self.pool_workers)
        await parts.enter(pool)

        onion: Onion | None = None
        if cfg.tor:
            onion = Onion(cfg, self.data_dir)
            await parts.enter(onion)
            self.cfg = cfg = replace(cfg, p2p_port=onion.p2p_port)
            self.onion = onion.address
        advertise = self.onion or cfg.announce
        node, inbox = await self._start_node(parts, advertise, onion)
        if cfg.tor:
            self.local_inbox = LocalInbox(inbox)
            await parts.enter(self.local_inbox)

        archive: ArchiveFile | None = None  # what was said survives restarts with SQLite
        if cfg.storage == "sqlite":
            archive = ArchiveFile(self.data_dir / ARCHIVE_FILE, keystore.archive_key())
            # closed after the service: it archives until it stops
            await parts.enter(Step("message archive", stop=archive.close))
        sender = DirectSender(cfg, pool.pool)
        await parts.enter(sender)
        at_rest = cfg.storage == "sqlite"  # files encrypted on disk, else in RAM only
        files = FileStore(self.data_dir / "files" if at_rest else None,
                          keystore.archive_key() if at_rest else None,
                          max_upload=cfg.max_upload_mb * 1024 * 1024)
        service = Service(keystore, node, pool.pool, base_bits=cfg.difficulty,
                          storage=cfg.storage, tor="on" if cfg.tor else "off",
                          chat_states=cfg.chat_states, sessions=cfg.sessions,
                          markers=cfg.markers, presence=cfg.presence,
                          archive_file=archive, files=files, share_avatar=cfg.share_avatar)
        # Invitations carry this node (when others can reach it) and the bootstrap peers.
        service.peerbook.bootstrap = list(dict.fromkeys(
            p for p in (advertise, *cfg.peers) if p))[:8]
        self.endpoint = service.outbox.endpoint = own_endpoint(cfg, self.onion)
        service.outbox.direct = sender.send
        await parts.enter(Step("service", lambda: service.start(deliver=False), service.stop))
        self.service = service
        if cfg.light:  # ask full nodes for our shards by prefix; keep what we can open
            watching = service.inbox.watching
            node.watch_shards(watching.shard_keys, watching.watches)
        if cfg.carry_mb_day:
            # the shards of its identities and of the rooms they read, as a light node asks
            self.carrying = Carrying(node, DepthRule(budget=cfg.carry_mb_day * 1_000_000),
                                     keys=service.inbox.watching.shard_keys)
            await parts.enter(Step("shards chosen by intake", self.carrying.start,
                                   self.carrying.stop))
        if cfg.max_upload_mb:  # before the listener: it offers uploads only if this runs
            # HTTPS with the XMPP listener's certificate: clients upload only to https slots
            self.file_server = FileServer(
                files, cfg.upload_port, self.data_dir if cfg.xmpp_listener else None,
                cfg.xmpp_domain)
            await parts.enter(self.file_server)

        if cfg.xmpp_listener:
            self.xmpp = XmppListener(cfg, service, self.data_dir)
            await parts.enter(self.xmpp)
        if cfg.component_domain:
            self.component = ComponentFace(cfg, service, self.data_dir)
            await parts.enter(self.component)
        self.web = WebFace(cfg, service, self.access_token)
        await parts.enter(self.web)
        # Only now that the faces listen are arrivals handed over (stored ones first).
        service.start_delivery()
        assert pool.warm is not None
        await parts.step("worker pool warm", pool.warm)

        ops = Operations(service, naming=Naming(cfg, self.data_dir), status=self.status,
                         stop=self.request_stop, web_link=lambda: self.web_url)
        control = ControlServer(ops, self.control_token, self.data_dir)
        await parts.enter(control)
        # The web UI's token is not in the file: `paranoim open` asks the daemon for it.
        await parts.enter(Step("runtime file", lambda: write_runtime(
            self.data_dir, {**self.status(), "control": control.address,
                            "control_token": self.control_token}),
            lambda: remove_runtime(self.data_dir)))

    def _lock_part(self) -> Step:
        held: list[DataDirLock] = []

        async def take() -> None:
            held.append(await take_daemon_lock(self.data_dir))

        async def release() -> None:
            for lock in held:
                remove_runtime(self.data_dir)
                lock.release()
        return Step("data directory lock", take, release)

    async def _start_node(self, parts: Parts, advertise: str,
                          onion: Onion | None) -> tuple[Node, DirectInbox]:
        cfg = self.cfg
        store: Store
        # store_mb caps the store below the memory budget's share (which the node applies)
        limit = cfg.store_mb * 1024 * 1024 if cfg.store_mb else DEFAULT_STORE_BYTES
        if cfg.storage == "sqlite":
            store = SQLiteStore(str(self.data_dir / "envelopes.db"), max_bytes=limit)
        else:
            store = MemoryStore(max_bytes=limit)
        # the node has stopped writing by the time this runs: checkpoint and close
        await parts.enter(Step("envelope store", stop=store.close))
        host = "127.0.0.1" if cfg.tor else cfg.p2p_listen  # with Tor, only the onion reaches it
        node = Node(NodeConfig(host=host, port=cfg.p2p_port, advertise=advertise,
                               base_bits=cfg.difficulty, bootstrap=list(cfg.peers),
                               memory_budget=cfg.memory_budget_mb * 1024 * 1024,
                               dial_private=cfg.dial_private, shards=cfg.shards,
                               light=cfg.light, light_depth=cfg.light_depth,
                               light_ids=str(self.data_dir / "light-ids.bin")
                               if cfg.light and cfg.storage == "sqlite" else "",
                               connector=onion.connector if onion is not None else None),
                    store=store)
        inbox = self.inbox = DirectInbox(cfg, node)  # its routes go on the app before it runs

        async def start() -> None:
            try:
                await node.start()
            except OSError as exc:
                raise port_error(exc, cfg.p2p_listen, cfg.p2p_port, "P2P node",
                                 "--p2p-port") from None
        await parts.enter(Step("P2P node", start, node.stop))
        self.node = node
        self._pause = NetworkPause(node)
        return node, inbox

    # --- what other commands see --------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        if self.xmpp is not None:
            ports["xmpp"] = self.xmpp.port
        if self.web is not None and self.web.port:
            ports["web"] = self.web.port
        if self.node is not None:
            ports["p2p"] = int(self.node.port)
        if self.file_server is not None and self.file_server.port:
            ports["upload"] = self.file_server.port
        if self.local_inbox is not None and self.local_inbox.port:
            ports["kkv_local"] = self.local_inbox.port
        return ports

    @property
    def web_url(self) -> str:
        """The link that opens the web UI, token and all: for a browser, never for output."""
        return self.web.url if self.web is not None else ""

    @property
    def web_address(self) -> str:
        return self.web.address if self.web is not None else ""

    @property
    def network_paused(self) -> bool:
        return self._pause is not None and self._pause.peers is not None

    def status(self) -> dict[str, Any]:
        return status_text.status(self)

    def direct_status(self) -> dict[str, Any]:
        return status_text.direct_status(self)

    def ready_lines(self) -> list[str]:
        return status_text.ready_lines(self)

    # --- run ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def pause_network(self, paused: bool) -> None:
        """Drop every peer link (remembering the peers) or bring them back."""
        if self._pause is not None:
            self._pause.set(paused)

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

