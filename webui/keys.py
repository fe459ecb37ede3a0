"""Typed application keys: everything the web UI keeps on its ``web.Application``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.api import ServiceAPI
from webui.session import SessionStore

SERVICE = web.AppKey("service", ServiceAPI)
ACCESS_TOKEN = web.AppKey("access_token", str)
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset[str])
SESSIONS = web.AppKey("sessions", SessionStore)
# open server-sent event streams, cancelled when the app shuts down
STREAMS = web.AppKey("streams", set[asyncio.Task[object]])
