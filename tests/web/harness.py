"""Serve the web UI on a real loopback port in front of the real service, and log in.

Shared by the aiohttp route tests (tests/integration/test_webui_*.py). The
service is ``bridge.service.Service`` with its key file in a temporary
directory, the real worker pool (one per test process, shared) and a real P2P
node (``bridge.net.node.Node``) listening on a free loopback port — the same
parts the daemon wires together, without the XMPP listener.
"""

from __future__ import annotations

import atexit
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from bridge.net.node import Node, NodeConfig
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.util import free_tcp_port
from webui import create_app

TOKEN = "test-access-token-0123456789abcdef"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
BITS = 8  # proof-of-work difficulty: real checks, test speed
DOMAIN = "localhost"
FINGERPRINT = ":".join(["AB", "CD", "EF", "01"] * 8)  # what the XMPP listener would report
KDF = {"kdf_ops": 1, "kdf_mem": 8192 * 8}  # Argon2id at its cheapest, for speed

_pool: WorkerPool | None = None


def shared_pool() -> WorkerPool:
    """One warm worker pool for every test of the process (spawning costs a second)."""
    global _pool
    if _pool is None:
        _pool = WorkerPool(2)
        atexit.register(_pool.close)
    return _pool


def allowed_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


def xmpp_settings(port: int = 5222) -> dict[str, object]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "domain": DOMAIN,
        "fingerprint": FINGERPRINT,
        "tls": "starttls",
        "contacts_domain": f"p2p.{DOMAIN}",
    }


@asynccontextmanager
async def real_node() -> AsyncIterator[Node]:
    node = Node(
        NodeConfig(
            host="127.0.0.1",
            port=0,
            base_bits=BITS,
            anti_entropy_interval=0.5,
            backoff_min=0.2,
            backoff_max=1.0,
        )
    )
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@asynccontextmanager
async def real_service(
    data_dir: Path | None = None, *, node: Node | None = None, passphrase: str | None = None
) -> AsyncIterator[Service]:
    """A started ``Service``: its own node unless one is given (to share a network)."""
    with tempfile.TemporaryDirectory(prefix="paranoim-webui-") as tmp:
        directory = data_dir or Path(tmp) / "data"
        async with _node_or(node) as used:
            service = Service(
                Keystore(directory, passphrase, **KDF), used, shared_pool(), base_bits=BITS
            )
            service.set_xmpp_settings(xmpp_settings())
            await service.start()
            try:
                yield service
            finally:
                await service.stop()


@asynccontextmanager
async def _node_or(node: Node | None) -> AsyncIterator[Node]:
    if node is not None:
        yield node
        return
    async with real_node() as own:
        yield own


@dataclass
class UI:
    service: Service
    port: int
    client: TestClient[Any, Any]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def login(self) -> None:
        resp = await self.client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert resp.status == 303, resp.status

    async def csrf(self, path: str = "/identities") -> str:
        resp = await self.client.get(path)
        match = CSRF_RE.search(await resp.text())
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    async def post(
        self, path: str, data: dict[str, str] | None = None, **kw: Any
    ) -> ClientResponse:
        """A same-origin form POST as Chromium sends it, with the session's CSRF token."""
        token = await self.csrf()
        form = dict(data or {})
        form.setdefault("csrf_token", token)
        headers = {"Origin": self.origin, "Sec-Fetch-Site": "same-origin"}
        headers.update(kw.pop("headers", {}) or {})
        return await self.client.post(path, data=form, headers=headers, **kw)


@asynccontextmanager
async def served_ui(service: Service | None = None, *, login: bool = True) -> AsyncIterator[UI]:
    """The app on a free loopback port; a fresh real service unless one is given."""
    if service is None:
        async with real_service() as own, served_ui(own, login=login) as ui:
            yield ui
        return
    port = free_tcp_port()
    app = create_app(service, access_token=TOKEN, allowed_hosts=allowed_hosts(port))
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    ui = UI(service, port, client)
    try:
        if login:
            await ui.login()
        yield ui
    finally:
        await client.close()
