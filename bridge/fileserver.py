"""The XEP-0363 HTTP listener: a PUT into an upload slot, a GET of a file, on
127.0.0.1 only (a part of the daemon, ``bridge.parts``).

One port speaks HTTPS and plain HTTP: a connection whose first byte opens a TLS
handshake (0x16) gets TLS with the XMPP listener's certificate (the same file, which
names ``localhost`` and ``127.0.0.1``), any other plain HTTP. The URLs handed out are
``https://`` when a certificate is given: Gajim and Conversations refuse to
upload to a slot whose PUT or GET URL is not https. Plain HTTP stays for links made
before and for programs that do not trust the certificate.

A PUT is refused before its body is read unless its slot exists (single use: taken
at once), has not expired, and its Content-Length is the size the slot was asked
for; the body is then read in pieces and the request cut off past that size. A GET
answers only a token the store holds. Anything else is 404 and says nothing more;
a Host header other than this listener's (a DNS-rebinding page) is 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.files import FileStore
from bridge.ports import bind, port_error
from bridge.xmpp.tls import ensure_certificate, server_context

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
READ_PIECE = 64 * 1024
MAX_HEADERS = 8 * 1024  # bytes of the request line and headers (aiohttp's own bound)
FIRST_BYTE_WAIT = 10.0  # seconds a new connection may stay silent before it is closed
TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello


class FileServer:
    name = "file upload listener"

    def __init__(self, files: FileStore, port: int = 0, cert_dir: Path | None = None,
                 domain: str = "localhost") -> None:
        """``cert_dir``: where the XMPP listener's certificate is (made if absent), for
        HTTPS; None: plain HTTP only."""
        self.files = files
        self.wanted_port = port
        self.port = 0
        self.cert_dir = cert_dir
        self.domain = domain
        self._runner: web.AppRunner | None = None
        self._hosts: set[str] = set()
        self._ssl: ssl.SSLContext | None = None
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._opening: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        # The body is read by hand (bounded by the slot), never by aiohttp's buffer.
        app = web.Application(client_max_size=READ_PIECE, middlewares=[self._host_check])
        app.router.add_put("/upload/{token}/{name}", self._put)
        app.router.add_get("/file/{token}/{name}", self._get)
        return app

    async def start(self) -> None:
        if self.cert_dir is not None:
            cert = await asyncio.to_thread(ensure_certificate, self.cert_dir, self.domain)
            self._ssl = server_context(cert)
        sock = bind(HOST, self.wanted_port, "file upload listener", "[xmpp] upload_port")
        try:
            self.port = int(sock.getsockname()[1])
            self._hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
            self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=3,
                                         max_line_size=MAX_HEADERS, max_field_size=MAX_HEADERS)
            await self._runner.setup()
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise port_error(exc, HOST, self.wanted_port, "file upload listener",
                             "[xmpp] upload_port") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._accepting = asyncio.create_task(self._accept(sock), name="file listener")
        scheme = "https" if self._ssl is not None else "http"
        self.files.base_url = f"{scheme}://{HOST}:{self.port}"

    async def stop(self) -> None:
        self.files.base_url = ""
        tasks = [t for t in (self._accepting, *self._opening) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors, a connection reset before accept
                log.warning("file listener: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._open(conn))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open(self, conn: socket.socket) -> None:
        """HTTP or HTTPS by the connection's first byte, then aiohttp serves it."""
        loop = asyncio.get_running_loop()
        try:
            conn.setblocking(False)
            readable: asyncio.Future[None] = loop.create_future()

            def ready() -> None:
                if not readable.done():
                    readable.set_result(None)
            loop.add_reader(conn.fileno(), ready)
            try:
                await asyncio.wait_for(readable, FIRST_BYTE_WAIT)
            finally:
                loop.remove_reader(conn.fileno())
            first = conn.recv(1, socket.MSG_PEEK)
            if not first:
                conn.close()
                return
            assert self._runner is not None and self._runner.server is not None
            if self._ssl is not None and first[0] == TLS_HANDSHAKE:
                await loop.connect_accepted_socket(self._runner.server, conn, ssl=self._ssl,
                                                   ssl_handshake_timeout=FIRST_BYTE_WAIT)
            else:
                await loop.connect_accepted_socket(self._runner.server, conn)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.debug("file listener: a connection failed before its request: %s", exc)
            conn.close()
        except BaseException:
            conn.close()
            raise

    @web.middleware
    async def _host_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host not in self._hosts:
            raise web.HTTPForbidden(text="wrong host")
        return await handler(request)

    async def _put(self, request: web.Request) -> web.StreamResponse:
        slot = self.files.take_slot(request.match_info["token"])
        if slot is None:
            raise web.HTTPNotFound(text="no such upload slot")
        if request.content_length != slot.size:
            raise web.HTTPBadRequest(text=f"the slot is for exactly {slot.size} bytes")
        received = bytearray()
        async for piece in request.content.iter_chunked(READ_PIECE):
            received += piece
            if len(received) > slot.size:
                raise web.HTTPRequestEntityTooLarge(max_size=slot.size,
                                                    actual_size=len(received))
        if len(received) != slot.size:
            raise web.HTTPBadRequest(text=f"the slot is for exactly {slot.size} bytes")
        self.files.put(slot.owner, slot.name, slot.media_type, bytes(received), token=slot.get)
        log.info("upload of %d bytes stored", slot.size)
        return web.Response(status=201)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        f = self.files.get(request.match_info["token"])
        if f is None:
            raise web.HTTPNotFound(text="no such file")
        return web.Response(body=f.data, content_type=f.media_type or "application/octet-stream",
                            headers={"X-Content-Type-Options": "nosniff",
                                     # a contact's "text/html" runs no script here
                                     "Content-Security-Policy": "sandbox",
                                     "Cache-Control": "private, max-age=86400"})
