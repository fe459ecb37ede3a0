"""Rendering helpers shared by the views and the middlewares.

Every HTML response goes through ``render`` so templates always get the same
context: the session's CSRF token, pending flash messages and the nav state.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from webui.session import Session

SESSION = web.RequestKey("session", Session)  # set by the access middleware
BACK = web.RequestKey("back", str)  # where a failed form sends the person back to

NAV = (
    ("start", "/start", "Start"),
    ("identities", "/identities", "Identities"),
    ("vanity", "/vanity", "Vanity"),
    ("invite", "/invite", "Invite"),
    ("contacts", "/contacts", "Contacts"),
    ("node", "/node", "Node"),
)


def session_of(request: web.Request) -> Session | None:
    session = request.get(SESSION)
    return session if isinstance(session, Session) else None


def require_session(request: web.Request) -> Session:
    session = session_of(request)
    if session is None:  # the access middleware runs first; this is a wiring bug
        raise web.HTTPForbidden()
    return session


LIVE_HEADER = "X-Live-Refresh"  # set by app.js when a live page fetches itself again


def base_context(request: web.Request) -> dict[str, Any]:
    """What every template sees, whichever middleware or view renders it."""
    session = session_of(request)
    # a live page's background fetch must not eat messages meant for the next page
    live = LIVE_HEADER in request.headers
    return {
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "flashes": session.pop_flashes() if session and not live else [],
        "nav": NAV if session else (),
        "section": request.path.split("/")[1] if request.path != "/" else "",
    }


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, {**base_context(request), **context}, status=status
    )
    # pages show addresses and passwords: keep them out of disk caches
    response.headers["Cache-Control"] = "no-store"
    return response


def refuse(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """A friendly refusal page carrying the status code the browser must see."""
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def back_to(request: web.Request, url: str) -> None:
    """Name the page a form returns to if the service refuses it."""
    request[BACK] = url


def see_other(url: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location=url)


def flash(request: web.Request, kind: str, text: str) -> None:
    session = session_of(request)
    if session is not None:
        session.flash(kind, text)
