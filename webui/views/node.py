"""Node health: peers (add, remove, state), store, PoW difficulty, storage, Tor, errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.core.errors import UserError
from webui import fmt
from webui.pages import back_to, render, require_session, see_other
from webui.views.common import field, service

# a link's state as the node names it -> (badge class, words for people)
PEER_STATES = {
    "active": ("up", "connected"),
    "connecting": ("waiting", "connecting"),
    "idle": ("waiting", "opening"),
    "hello_sent": ("waiting", "greeting"),
    "hello_received": ("waiting", "greeting"),
    "closed": ("down", "closed"),
}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def peer_view(peer: dict[str, object]) -> dict[str, Any]:
    """One peer record of ``health().peers`` as the page shows it.

    ``address`` is the host:port others can dial (empty for an inbound peer that did
    not tell its listening address; then only its IP, ``remote``, is known), and it
    is what ``remove_peer`` takes.
    """
    address = str(peer.get("address") or "")
    remote = str(peer.get("remote") or "")
    state = str(peer.get("state") or "")
    badge, words = PEER_STATES.get(state, ("", state))
    inbound = peer.get("direction") == "in"
    meta = ["they connected to us" if inbound else "we connected to them"]
    since = _int(peer.get("since"))
    if since:
        meta.append(f"since {fmt.timestamp(since)}")
    if "bytes_in" in peer or "bytes_out" in peer:
        bytes_in, bytes_out = _int(peer.get("bytes_in")), _int(peer.get("bytes_out"))
        meta.append(f"{fmt.size(bytes_in)} in, {fmt.size(bytes_out)} out")
    if peer.get("light"):
        meta.append("light node")
    node_id = str(peer.get("node_id") or "")
    return {
        "address": address,
        "label": address or (f"{remote} (inbound)" if remote else "(unknown)"),
        "state": words,
        "badge": badge,
        "meta": meta,
        "node_id": node_id[:16],
    }


async def node_page(request: web.Request) -> web.StreamResponse:
    health = service(request).health()
    peers = [peer_view(p) for p in health.peers]
    return render(
        request,
        "node.html",
        {
            "health": health,
            "peers": peers,
            "connected": sum(1 for p in peers if p["badge"] == "up"),
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
    require_session(request).flash("ok", f"Peer {host_port} added; connecting.")
    raise see_other("/node")


async def peer_remove(request: web.Request) -> web.StreamResponse:
    back_to(request, "/node")
    host_port = await field(request, "peer", max_len=300)
    service(request).remove_peer(host_port)
    require_session(request).flash("ok", f"Peer {host_port} removed.")
    raise see_other("/node")
