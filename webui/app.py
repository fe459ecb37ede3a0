"""The web UI's app factory.

``create_app`` wires the service, the templates, the routes and the middlewares
(outermost first: Host allowlist, body limits, access token/session, CSRF, then
the error middleware around the views). The daemon binds the app to 127.0.0.1;
it passes a fresh random ``access_token`` per start and the exact ``Host``
values the browser will send, such as ``{"127.0.0.1:8765", "localhost:8765"}``.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.api import ServiceAPI
from webui import fmt
from webui.errors import error_middleware
from webui.keys import ACCESS_TOKEN, ALLOWED_HOSTS, SERVICE, SESSIONS, STREAMS
from webui.routes import setup_routes
from webui.security.access import access_middleware
from webui.security.csrf import csrf_middleware
from webui.security.headers import add_security_headers
from webui.security.hosts import host_middleware, normalize_hosts
from webui.security.limits import MAX_BODY, limits_middleware
from webui.session import SessionStore

TEMPLATES_DIR = Path(__file__).parent / "templates"
MIN_TOKEN_LENGTH = 16


async def _cancel_streams(app: web.Application) -> None:
    # server-sent event streams would otherwise hold shutdown until their jobs end
    streams = app[STREAMS]
    for task in list(streams):
        task.cancel()


def create_app(
    service: ServiceAPI, *, access_token: str, allowed_hosts: set[str]
) -> web.Application:
    if len(access_token) < MIN_TOKEN_LENGTH:
        raise ValueError("access_token must be a long random string (secrets.token_urlsafe)")
    hosts = normalize_hosts(allowed_hosts)
    if not hosts:
        raise ValueError("allowed_hosts must name the Host values the browser will send")

    app = web.Application(
        middlewares=[
            host_middleware,
            limits_middleware,
            access_middleware,
            csrf_middleware,
            error_middleware,
        ],
        client_max_size=MAX_BODY,
    )
    app[SERVICE] = service
    app[ACCESS_TOKEN] = access_token
    app[ALLOWED_HOSTS] = hosts
    app[SESSIONS] = SessionStore()
    app[STREAMS] = set()

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["count"] = fmt.count
    env.filters["size"] = fmt.size
    env.filters["duration"] = fmt.duration
    env.filters["ts"] = fmt.timestamp

    setup_routes(app)
    app.on_response_prepare.append(add_security_headers)
    app.on_shutdown.append(_cancel_streams)
    return app
