"""The one error middleware: turns refusals into pages a person can act on.

A ``UserError`` from the service (or from a view checking a form) is the
person's to fix, and its message says how. After a form (POST) it becomes a
flash message on the page the form came from; on a GET with a query (say, an
invalid vanity prefix) it is flashed on the same page without the query;
otherwise it is shown as a 400 page. 404/405 get friendly pages, and anything
unexpected becomes a 500 page that shows no internals (they go to the log).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.core.errors import UserError
from webui.pages import BACK, flash, refuse

log = logging.getLogger(__name__)


def _fallback_back(request: web.Request) -> str:
    section = request.path.split("/")[1]
    return f"/{section}" if section else "/"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UserError as err:
        message = str(err) or "That did not work; please check what you typed."
        message = message[0].upper() + message[1:]
        if request.method == "POST":
            flash(request, "error", message)
            raise web.HTTPSeeOther(location=request.get(BACK) or _fallback_back(request)) from None
        if request.method == "GET" and request.query_string:
            flash(request, "error", message)
            raise web.HTTPSeeOther(location=request.get(BACK) or request.path) from None
        return refuse(request, 400, "That did not work", message)
    except web.HTTPNotFound:
        return refuse(request, 404, "Not found", "There is no page at this address.")
    except web.HTTPMethodNotAllowed as exc:
        return refuse(
            request, 405, "Not allowed", f"This page does not accept {exc.method} requests."
        )
    except web.HTTPException:
        raise
    except Exception:
        log.exception("web UI request %s %s failed", request.method, request.path)
        return refuse(
            request,
            500,
            "Something went wrong",
            "ParanoIM hit an unexpected problem. Nothing was changed by this page; "
            "the daemon's log has the details.",
        )
