"""The XEP-0363 HTTP listener: a PUT into an upload slot, a GET of a file, on
127.0.0.1 only (a part of the daemon, ``bridge.parts``).

A PUT is refused before its body is read unless its slot exists (single use: taken
at once), has not expired, and its Content-Length is the size the slot was asked
for; the body is then read in pieces and the request cut off past that size. A GET
answers only a token the store holds. Anything else is 404 and says nothing more;
a Host header other than this listener's (a DNS-rebinding page) is 403.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.files import FileStore
from bridge.ports import bind, port_error

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
READ_PIECE = 64 * 1024
MAX_HEADERS = 8 * 1024  # bytes of the request line and headers (aiohttp's own bound)


class FileServer:
    name = "file upload listener"

    def __init__(self, files: FileStore, port: int = 0) -> None:
        self.files = files
        self.wanted_port = port
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._hosts: set[str] = set()

    def app(self) -> web.Application:
        # The body is read by hand (bounded by the slot), never by aiohttp's buffer.
        app = web.Application(client_max_size=READ_PIECE, middlewares=[self._host_check])
        app.router.add_put("/upload/{token}/{name}", self._put)
        app.router.add_get("/file/{token}/{name}", self._get)
        return app

    async def start(self) -> None:
        sock = bind(HOST, self.wanted_port, "file upload listener", "[xmpp] upload_port")
        try:
            self.port = int(sock.getsockname()[1])
            self._hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
            self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=3,
                                         max_line_size=MAX_HEADERS, max_field_size=MAX_HEADERS)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except OSError as exc:
            sock.close()
            raise port_error(exc, HOST, self.wanted_port, "file upload listener",
                             "[xmpp] upload_port") from None
        except BaseException:
            sock.close()
            raise
        self.files.base_url = f"http://{HOST}:{self.port}"

    async def stop(self) -> None:
        self.files.base_url = ""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
