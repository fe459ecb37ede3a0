"""Host header allowlist: the defence against DNS rebinding.

A page on evil.example can make its own name resolve to 127.0.0.1 and then talk
to us from the browser as "same origin". The browser still sends
``Host: evil.example:PORT``, so anything but the names the daemon listens under is
refused with 421 Misdirected Request before any other code runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from webui.keys import ALLOWED_HOSTS


def normalize_hosts(hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in hosts if h.strip())


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    return bool(host) and host is not None and host.lower() in allowed


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not host_allowed(request.headers.get("Host"), request.app[ALLOWED_HOSTS]):
        # plain text, and the foreign name is not echoed back
        raise web.HTTPMisdirectedRequest(
            text="This address is not served here. Open the web UI with `paranoim open`.",
        )
    return await handler(request)
