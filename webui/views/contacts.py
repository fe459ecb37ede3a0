"""Contacts of one identity: add by link/address or QR photo, accept, block, remove."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from bridge.core.errors import UserError
from bridge.events import ContactState
from webui.pages import back_to, render, require_session, see_other
from webui.qr import MAX_UPLOAD_BYTES, decode_qr
from webui.security.limits import KIB, body_limit
from webui.views.common import field, identity_in_url, need_identity, service

MAX_PETNAME = 64


async def contacts_redirect(request: web.Request) -> web.StreamResponse:
    raise see_other(f"/contacts/{quote(need_identity(request).address)}")


async def contacts_page(request: web.Request) -> web.StreamResponse:
    ident = identity_in_url(request, request.match_info["owner"])
    svc = service(request)
    contacts = sorted(svc.contacts(ident.address), key=lambda c: (c.petname.lower(), c.address))
    return render(
        request,
        "contacts.html",
        {
            "ident": ident,
            "identities": svc.identities(),
            "pending": [c for c in contacts if c.state == ContactState.PENDING_IN],
            "accepted": [c for c in contacts if c.state == ContactState.ACCEPTED],
            "blocked": [c for c in contacts if c.state == ContactState.BLOCKED],
            "max_upload": MAX_UPLOAD_BYTES,
        },
    )


def _owner(request: web.Request) -> str:
    owner = request.match_info["owner"]
    back_to(request, f"/contacts/{quote(owner)}")
    return owner


def _added(request: web.Request, owner: str, name: str) -> web.HTTPSeeOther:
    require_session(request).flash("ok", f"“{name}” added to your contacts.")
    return see_other(f"/contacts/{quote(owner)}")


async def contact_add(request: web.Request) -> web.StreamResponse:
    owner = _owner(request)
    link = await field(request, "link")
    petname = await field(request, "petname", max_len=MAX_PETNAME)
    if not link:
        raise UserError("Paste the invitation link or address you were given.")
    contact = service(request).add_contact(owner, link, petname)
    raise _added(request, owner, contact.petname or contact.fingerprint)


@body_limit(MAX_UPLOAD_BYTES + 64 * KIB)
async def contact_scan(request: web.Request) -> web.StreamResponse:
    owner = _owner(request)
    form = await request.post()
    upload = form.get("photo")
    petname = form.get("petname", "")
    if not isinstance(upload, web.FileField):
        raise UserError("Choose a photo of the QR code first.")
    if not isinstance(petname, str) or len(petname) > MAX_PETNAME:
        raise UserError(f"The petname is too long (at most {MAX_PETNAME} characters).")
    data = upload.file.read(MAX_UPLOAD_BYTES + 1)
    link = await asyncio.to_thread(decode_qr, data)
    contact = service(request).add_contact(owner, link, petname.strip())
    raise _added(request, owner, contact.petname or contact.fingerprint)


async def contact_accept(request: web.Request) -> web.StreamResponse:
    owner = _owner(request)
    address = request.match_info["address"]
    svc = service(request)
    was_blocked = any(
        c.address == address and c.state == ContactState.BLOCKED for c in svc.contacts(owner)
    )
    contact = svc.accept_contact(owner, address)
    done = "unblocked" if was_blocked else "accepted"
    require_session(request).flash("ok", f"“{contact.petname or contact.fingerprint}” {done}.")
    raise see_other(f"/contacts/{quote(owner)}")


async def contact_block(request: web.Request) -> web.StreamResponse:
    owner = _owner(request)
    contact = service(request).block_contact(owner, request.match_info["address"])
    require_session(request).flash("ok", f"“{contact.petname or contact.fingerprint}” blocked.")
    raise see_other(f"/contacts/{quote(owner)}")


async def contact_new_session(request: web.Request) -> web.StreamResponse:
    owner = _owner(request)
    address = request.match_info["address"]
    svc = service(request)
    svc.new_session(owner, address)
    name = next((c.petname or c.fingerprint for c in svc.contacts(owner) if c.address == address),
                address[:8])
    require_session(request).flash(
        "ok", f"A new session with “{name}” is starting; their daemon will tell them.")
    raise see_other(f"/contacts/{quote(owner)}")


async def contact_remove(request: web.Request) -> web.StreamResponse:
    owner = _owner(request)
    service(request).remove_contact(owner, request.match_info["address"])
    require_session(request).flash("ok", "Contact removed.")
    raise see_other(f"/contacts/{quote(owner)}")
