"""Live pages: a server-sent event stream saying *what* changed, never the data.

The Contacts and Node pages open ``/live?topic=contacts`` or ``/live?topic=node``;
on a ``changed`` event the page fetches itself again and swaps in its live parts
(app.js), so a contact request that arrives, or a peer that connects, shows up
without a reload and without a second copy of the page's logic in JavaScript.

Contacts and identities changes come from ``service.subscribe``. The node has no
events of its own, so its health summary (peers and their states, stored
envelopes, errors) is compared once a second and a change is announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiohttp import web

from bridge.api import ServiceAPI
from bridge.events import ContactsChanged, Event, IdentitiesChanged
from webui.keys import STREAMS
from webui.views.common import service

TOPICS = frozenset({"contacts", "identities", "node"})
NODE_CHECK = 1.0  # seconds between comparisons of the node's health summary
KEEPALIVE = 15.0  # seconds of silence before a comment line, to notice closed pages


def node_summary(svc: ServiceAPI) -> str:
    h = svc.health()
    peers = sorted((str(p.get("address") or p.get("remote")), str(p.get("state"))) for p in h.peers)
    return json.dumps([peers, h.stored_envelopes, h.recent_errors[-1:]])


class Changes:
    """What changed since the stream last wrote, coalesced: one event per kind."""

    def __init__(self, topics: frozenset[str]) -> None:
        self.topics = topics
        self.pending: dict[str, dict[str, str]] = {}
        self.wake = asyncio.Event()

    def note(self, what: str, **detail: str) -> None:
        if what in self.topics:
            key = json.dumps([what, detail], sort_keys=True)
            self.pending[key] = {"what": what, **detail}
            self.wake.set()

    def on_event(self, event: Event) -> None:
        if isinstance(event, ContactsChanged):
            self.note("contacts", owner=event.owner)
        elif isinstance(event, IdentitiesChanged):
            self.note("identities")

    def take(self) -> list[dict[str, str]]:
        out, self.pending = list(self.pending.values()), {}
        self.wake.clear()
        return out


async def live_events(request: web.Request) -> web.StreamResponse:
    topics = frozenset(request.query.getall("topic", [])) & TOPICS
    if not topics:
        raise web.HTTPNotFound()
    svc = service(request)
    changes = Changes(topics)
    unsubscribe: Callable[[], None] = svc.subscribe(changes.on_event)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    task = asyncio.current_task()
    if task is not None:
        request.app[STREAMS].add(task)
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        summary = node_summary(svc) if "node" in topics else ""
        quiet = 0.0
        while True:
            timeout = NODE_CHECK if "node" in topics else KEEPALIVE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changes.wake.wait(), timeout)
            if "node" in topics:
                now = node_summary(svc)
                if now != summary:
                    summary = now
                    changes.note("node")
            sent = changes.take()
            for change in sent:
                await response.write(f"event: changed\ndata: {json.dumps(change)}\n\n".encode())
            quiet = 0.0 if sent else quiet + timeout
            if quiet >= KEEPALIVE:
                await response.write(b": still here\n\n")
                quiet = 0.0
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page was closed, or the app is shutting down
    finally:
        unsubscribe()
        if task is not None:
            request.app[STREAMS].discard(task)
    return response
