"""Node health: peers (add, remove, state), store, PoW difficulty, storage, Tor, errors."""

from __future__ import annotations

from aiohttp import web

from bridge.core.errors import UserError
from webui import fmt
from webui.pages import back_to, render, require_session, see_other
from webui.views.common import field, service

# keys a peer record may name its endpoint under; the first present one is used
PEER_ENDPOINT_KEYS = ("host_port", "address", "addr", "endpoint", "url")


def peer_endpoint(peer: dict[str, object]) -> str:
    for key in PEER_ENDPOINT_KEYS:
        value = peer.get(key)
        if value:
            return str(value)
    return ""


async def node_page(request: web.Request) -> web.StreamResponse:
    health = service(request).health()
    peers = []
    for peer in health.peers:
        endpoint = peer_endpoint(peer)
        details = {k: v for k, v in peer.items() if k not in PEER_ENDPOINT_KEYS and k != "state"}
        state = str(peer.get("state", ""))
        peers.append({"endpoint": endpoint, "state": state, "details": details})
    return render(
        request,
        "node.html",
        {
            "health": health,
            "peers": peers,
            "stored_bytes": fmt.size(health.stored_bytes),
            "stored_envelopes": fmt.count(health.stored_envelopes),
        },
    )


async def peer_add(request: web.Request) -> web.StreamResponse:
    back_to(request, "/node")
    host_port = await field(request, "peer", max_len=300)
    if not host_port:
        raise UserError("Type a peer as host:port, for example 192.0.2.7:45069.")
    service(request).add_peer(host_port)
    require_session(request).flash("ok", f"Peer {host_port} added.")
    raise see_other("/node")


async def peer_remove(request: web.Request) -> web.StreamResponse:
    back_to(request, "/node")
    host_port = await field(request, "peer", max_len=300)
    service(request).remove_peer(host_port)
    require_session(request).flash("ok", f"Peer {host_port} removed.")
    raise see_other("/node")
