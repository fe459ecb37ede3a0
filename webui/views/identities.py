"""Identities: list, create, rename, delete (with confirmation), export and import."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from bridge.core.errors import UserError
from webui.pages import back_to, render, require_session, see_other
from webui.security.limits import KIB, body_limit
from webui.views.common import nickname, service
from webui.views.passphrase import MAX_PASSPHRASE, passphrase_field

MAX_KEY_FILE = 256 * KIB


async def identities_page(request: web.Request) -> web.StreamResponse:
    svc = service(request)
    idents = sorted(svc.identities(), key=lambda i: i.created_at)
    return render(
        request,
        "identities.html",
        {"identities": idents, "keys_encrypted": svc.keys_encrypted()},
    )


async def identity_create(request: web.Request) -> web.StreamResponse:
    back_to(request, "/identities")
    ident = await service(request).create_identity(await nickname(request))
    require_session(request).current_identity = ident.address
    require_session(request).flash("ok", f"Identity “{ident.nick}” created.")
    raise see_other("/identities")


async def identity_rename(request: web.Request) -> web.StreamResponse:
    back_to(request, "/identities")
    address = request.match_info["address"]
    ident = service(request).rename_identity(address, await nickname(request))
    require_session(request).flash("ok", f"Renamed to “{ident.nick}”.")
    raise see_other("/identities")


async def identity_delete_confirm(request: web.Request) -> web.StreamResponse:
    ident = service(request).identity(request.match_info["address"])
    return render(request, "identity_delete.html", {"ident": ident})


async def identity_delete(request: web.Request) -> web.StreamResponse:
    address = request.match_info["address"]
    back_to(request, f"/identities/{quote(address)}/delete")
    ident = service(request).identity(address)
    confirm = (await request.post()).get("confirm", "")
    if not isinstance(confirm, str) or confirm.strip() != ident.nick:
        raise UserError("To delete, type the identity's nickname exactly as shown.")
    service(request).delete_identity(address)
    require_session(request).flash("ok", f"Identity “{ident.nick}” deleted.")
    raise see_other("/identities")


def _filename(nick: str, address: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", nick).strip("-")[:32] or "identity"
    return f"paranoim-{safe}-{address[:8]}.key"


async def identity_export(request: web.Request) -> web.StreamResponse:
    back_to(request, "/identities")
    address = request.match_info["address"]
    passphrase = await passphrase_field(request, "passphrase")
    repeat = await passphrase_field(request, "passphrase2")
    if not passphrase:
        raise UserError("Choose a passphrase: the exported file is encrypted with it.")
    if passphrase != repeat:
        raise UserError("The two passphrases differ; type the same one twice.")
    svc = service(request)
    ident = svc.identity(address)
    data = await svc.export_identity(address, passphrase)
    return web.Response(
        body=data,
        content_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(ident.nick, address)}"',
            "Cache-Control": "no-store",
        },
    )


@body_limit(MAX_KEY_FILE + 16 * KIB)
async def identity_import(request: web.Request) -> web.StreamResponse:
    back_to(request, "/identities")
    form = await request.post()
    upload = form.get("file")
    passphrase = form.get("passphrase", "")
    if not isinstance(upload, web.FileField):
        raise UserError("Choose the exported key file to import.")
    if not isinstance(passphrase, str) or len(passphrase) > MAX_PASSPHRASE:
        raise UserError("The passphrase is too long.")
    data = upload.file.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise UserError("That file is far larger than an exported identity; check the file.")
    ident = await service(request).import_identity(data, passphrase)
    require_session(request).current_identity = ident.address
    require_session(request).flash("ok", f"Identity “{ident.nick}” imported.")
    raise see_other("/identities")
