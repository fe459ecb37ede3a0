"""Serve the web UI on a real loopback port with the fake service, and log in.

Shared by the aiohttp route tests (tests/integration/test_webui_*.py) and the
browser tests. ``served_ui`` runs inside the test's event loop; ``ThreadedUI``
runs the app on its own loop in a thread, for synchronous Playwright tests.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.web.fake_service import FakeService
from webui import create_app

TOKEN = "test-access-token-0123456789abcdef"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def allowed_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


@dataclass
class UI:
    service: FakeService
    port: int
    client: TestClient

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

    async def post(self, path: str, data: object = None, **kw: object) -> object:
        """A same-origin form POST as Chromium sends it, with the session's CSRF token."""
        token = await self.csrf()
        form = dict(data or {})  # type: ignore[call-overload]
        form.setdefault("csrf_token", token)
        headers = {"Origin": self.origin, "Sec-Fetch-Site": "same-origin"}
        headers.update(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
        return await self.client.post(path, data=form, headers=headers, **kw)


@asynccontextmanager
async def served_ui(service: FakeService | None = None, *, login: bool = True) -> AsyncIterator[UI]:
    service = service or FakeService()
    port = free_port()
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
        service.shutdown()


class ThreadedUI:
    """The app on its own event loop in a daemon thread (for sync Playwright tests)."""

    def __init__(self, service: FakeService | None = None) -> None:
        self.service = service or FakeService()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.login_url = f"{self.url}/?token={TOKEN}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedUI:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = create_app(self.service, access_token=TOKEN, allowed_hosts=allowed_hosts(self.port))
        self._runner = web.AppRunner(app, shutdown_timeout=2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.service.shutdown()
