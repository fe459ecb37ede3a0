"""Start: create the first identity, then the exact settings to type into a Jabber client."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from bridge.events import IdentityInfo
from webui.pages import back_to, render, require_session, see_other
from webui.views.common import chosen_identity, nickname, service
from webui.views.passphrase import apply_passphrase, new_passphrase


async def index(request: web.Request) -> web.StreamResponse:
    raise see_other("/identities" if service(request).identities() else "/start")


def client_settings(request: web.Request, ident: IdentityInfo) -> dict[str, str]:
    """What to type into Pidgin/Gajim, as strings, in the order the clients ask."""
    s = service(request).xmpp_settings()
    domain = str(s.get("domain", "localhost"))
    fingerprint = s.get("fingerprint") or s.get("cert_fingerprint") or s.get("certificate_sha256")
    return {
        "jid": f"{ident.username}@{domain}",
        "username": ident.username,
        "domain": domain,
        "password": ident.xmpp_password,
        "host": str(s.get("host", "127.0.0.1")),
        "port": str(s.get("port", 5222)),
        "fingerprint": str(fingerprint or "—"),
        "tls": str(s.get("tls", "STARTTLS")).upper(),
    }


async def start_page(request: web.Request) -> web.StreamResponse:
    address = request.query.get("id", "")
    ident = chosen_identity(request, address)
    if ident is None:
        return render(
            request,
            "start.html",
            {"ident": None, "keys_encrypted": service(request).keys_encrypted()},
        )
    return render(
        request,
        "start.html",
        {
            "ident": ident,
            "identities": service(request).identities(),
            "settings": client_settings(request, ident),
        },
    )


async def start_create(request: web.Request) -> web.StreamResponse:
    back_to(request, "/start")
    nick = await nickname(request)
    svc = service(request)
    passphrase = await new_passphrase(request, required=False)
    if passphrase is not None and not svc.keys_encrypted():
        # before the identity exists, so its key is never written unencrypted
        await apply_passphrase(request, passphrase)
    ident = await svc.create_identity(nick)
    session = require_session(request)
    session.current_identity = ident.address
    session.flash("ok", f"Identity “{ident.nick}” created. Now set up your Jabber client.")
    if passphrase is not None:
        session.flash(
            "ok",
            "Your keys are encrypted with your passphrase. ParanoIM asks for it each time "
            "it starts (or reads it from PARANOIM_PASSPHRASE).",
        )
    raise see_other(f"/start?id={quote(ident.address)}")
