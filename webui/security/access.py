"""Per-start access token and the session cookie it turns into.

The daemon opens ``http://127.0.0.1:PORT/?token=...`` (``--open``, the tray,
``paranoim open``) and never prints or logs it. The first visit with the right
token starts a session: an HttpOnly, SameSite=Strict cookie holds a random
session id, and the browser is redirected to the same URL without the token so
it does not linger in the address bar or history. Every other request needs that
cookie; without it the person gets a 403 page telling them how to open the link.
Static files (CSS, JS, icon) are public.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from webui.keys import ACCESS_TOKEN, SESSIONS
from webui.pages import SESSION, refuse
from webui.session import cookie_name

TOKEN_PARAM = "token"  # noqa: S105 - the name of a URL parameter, not a secret
PUBLIC_PREFIX = "/static/"


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _clean_url(request: web.Request) -> str:
    query = request.url.query.copy()
    query.popall(TOKEN_PARAM, None)
    return str(request.rel_url.with_query(query))


def _denied(request: web.Request) -> web.Response:
    return refuse(
        request,
        403,
        "Open the web UI with paranoim open",
        "This page controls your keys, so it only opens from a link that carries this "
        "start's access token. Run `paranoim open` (or use the tray icon's Open web UI, "
        "or start ParanoIM with --open) and it opens in your browser; "
        "`paranoim open --print` prints the link instead.",
    )


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC_PREFIX):
        return await handler(request)
    sessions = request.app[SESSIONS]
    name = cookie_name(request.host)

    token = request.query.get(TOKEN_PARAM)
    if token is not None and request.method in ("GET", "HEAD"):
        if not token_matches(token, request.app[ACCESS_TOKEN]):
            return _denied(request)
        existing = sessions.get(request.cookies.get(name))
        redirect = web.HTTPSeeOther(location=_clean_url(request))
        if existing is None:
            session_id, _ = sessions.create()
            redirect.set_cookie(name, session_id, httponly=True, samesite="Strict", path="/")
        raise redirect

    session = sessions.get(request.cookies.get(name))
    if session is None:
        return _denied(request)
    request[SESSION] = session
    return await handler(request)
