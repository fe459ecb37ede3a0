"""Invitations: the identity's link as copyable text and as an inline SVG QR code."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from webui.pages import render, see_other
from webui.qr import invitation_svg
from webui.views.common import identity_in_url, need_identity, service


async def invite_redirect(request: web.Request) -> web.StreamResponse:
    raise see_other(f"/invite/{quote(need_identity(request).address)}")


async def invite_page(request: web.Request) -> web.StreamResponse:
    ident = identity_in_url(request, request.match_info["address"])
    svc = service(request)
    link = svc.invite_link(ident.address)
    return render(
        request,
        "invite.html",
        {
            "ident": ident,
            "identities": svc.identities(),
            "link": link,
            "qr_svg": invitation_svg(link),
        },
    )
