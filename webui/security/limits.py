"""Request body size limits, per route.

Ordinary forms are tiny; only the identity import and the QR photo upload may
carry a file. A view declares a larger allowance with ``@body_limit(n)``; every
other request body is capped at ``DEFAULT_LIMIT``. The check runs on the
declared Content-Length before a byte of the body is read; a body without a
length is refused (browsers always send one for forms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from webui.pages import refuse

KIB = 1024
MIB = 1024 * KIB
DEFAULT_LIMIT = 64 * KIB
# the app's own hard cap (aiohttp client_max_size): the largest route allowance
MAX_BODY = 10 * MIB

F = TypeVar("F", bound=Callable[..., object])


def body_limit(limit: int) -> Callable[[F], F]:
    if not 0 < limit <= MAX_BODY:
        raise ValueError("body limit out of range")

    def mark(view: F) -> F:
        view.body_limit = limit  # type: ignore[attr-defined]
        return view

    return mark


def limit_for(request: web.Request) -> int:
    return int(getattr(request.match_info.handler, "body_limit", DEFAULT_LIMIT))


def _human(n: int) -> str:
    return f"{n // MIB} MB" if n >= MIB else f"{n // KIB} KB"


@web.middleware
async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.body_exists:
        limit = limit_for(request)
        length = request.content_length
        if length is None:
            return refuse(request, 411, "Length required", "The request had no length.")
        if length > limit:
            return refuse(
                request,
                413,
                "Too large",
                f"That upload is too large; the limit here is {_human(limit)}.",
            )
    return await handler(request)
