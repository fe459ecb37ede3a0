"""CSRF protection for every state-changing request (POST, PUT, PATCH, DELETE).

Three checks, cheapest first, each enough to stop a cross-site form on its own:
``Sec-Fetch-Site`` must be ``same-origin`` (or ``none``) when the browser sends it;
``Origin`` must be this very origin when present (see below for ``null``); and
the request must carry the session's CSRF token (form field ``csrf_token`` or
header ``X-CSRF-Token``), compared in constant time. Any failure is a 403 page.

Our own ``Referrer-Policy: no-referrer`` makes Chromium send ``Origin: null`` on
every form POST, even same-origin ones (the Fetch standard serialises the origin
as null under that policy). So ``null`` is accepted only together with
``Sec-Fetch-Site: same-origin``, which no other site can forge; a ``null`` origin
from a sandboxed frame or a data: URL comes with ``cross-site`` and is refused.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from webui.keys import ALLOWED_HOSTS
from webui.pages import refuse, session_of

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAME_SITE_VALUES = frozenset({"same-origin", "none"})


def origin_allowed(
    origin: str | None, host: str, allowed_hosts: frozenset[str], fetch_site: str | None = None
) -> bool:
    """None (no Origin header) passes: the CSRF token still has to match."""
    if origin is None:
        return True
    if origin == "null":
        return fetch_site is not None and fetch_site.lower() == "same-origin"
    return host.lower() in allowed_hosts and origin.lower() == f"http://{host.lower()}"


def fetch_site_allowed(value: str | None) -> bool:
    return value is None or value.lower() in SAME_SITE_VALUES


def tokens_match(given: object, expected: str) -> bool:
    if not isinstance(given, str) or not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _refuse(request: web.Request, why: str) -> web.Response:
    return refuse(
        request,
        403,
        "This request was refused",
        f"{why} Go back, reload the page and try again. If you did not just press a "
        "button on this page, another site tried to act on your behalf.",
    )


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in UNSAFE_METHODS:
        return await handler(request)
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if not fetch_site_allowed(fetch_site):
        return _refuse(request, "The request came from another site.")
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, request.app[ALLOWED_HOSTS], fetch_site):
        return _refuse(request, "The request came from another origin.")
    session = session_of(request)
    expected = session.csrf_token if session else ""
    given: object = request.headers.get(HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        given = (await request.post()).get(FIELD)
    if not tokens_match(given, expected):
        return _refuse(request, "The form's security token is missing or out of date.")
    return await handler(request)
