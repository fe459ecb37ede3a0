"""Small helpers the views share: the service, the chosen identity, form fields."""

from __future__ import annotations

from aiohttp import web

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.events import IdentityInfo
from webui.keys import SERVICE
from webui.pages import require_session

MAX_FIELD = 2000  # characters; links and addresses are far shorter


def service(request: web.Request) -> ServiceAPI:
    return request.app[SERVICE]


async def field(request: web.Request, name: str, *, max_len: int = MAX_FIELD) -> str:
    value = (await request.post()).get(name, "")
    if not isinstance(value, str):
        raise UserError(f"The field “{name}” should be text.")
    if len(value) > max_len:
        raise UserError(f"The field “{name}” is too long (at most {max_len} characters).")
    return value.strip()


async def nickname(request: web.Request, name: str = "nick") -> str:
    nick = await field(request, name, max_len=64)
    if not nick:
        raise UserError("Give the identity a nickname; only you and your contacts see it.")
    return nick


def identity_in_url(request: web.Request, address: str) -> IdentityInfo:
    """The identity a URL names (UserError if unknown); it becomes the current one."""
    ident = service(request).identity(address)
    require_session(request).current_identity = ident.address
    return ident


def chosen_identity(request: web.Request, address: str = "") -> IdentityInfo | None:
    """The identity named in the URL, else the one last looked at, else the newest."""
    if address:
        return identity_in_url(request, address)
    svc = service(request)
    session = require_session(request)
    identities = svc.identities()
    for ident in identities:
        if ident.address == session.current_identity:
            return ident
    if not identities:
        return None
    newest = max(identities, key=lambda i: i.created_at)
    session.current_identity = newest.address
    return newest


def need_identity(request: web.Request) -> IdentityInfo:
    ident = chosen_identity(request)
    if ident is None:
        raise UserError("Create an identity first: it is your address on the network.")
    return ident
