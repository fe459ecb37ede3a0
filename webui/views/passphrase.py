"""The key file's passphrase: set it at first run, later set, change or clear it.

The passphrase encrypts the key file at rest (Argon2id, then XSalsa20-Poly1305);
the daemon needs it at every start (PARANOIM_PASSPHRASE or the prompt). Argon2id
takes about a second on purpose, so the work runs off the event loop.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.core.errors import UserError
from webui.pages import back_to, require_session, see_other
from webui.views.common import service

MIN_PASSPHRASE = 8
MAX_PASSPHRASE = 1024


async def passphrase_field(request: web.Request, name: str) -> str:
    """A passphrase exactly as typed: spaces count, nothing is stripped."""
    value = (await request.post()).get(name, "")
    if not isinstance(value, str):
        raise UserError("The passphrase should be text.")
    if len(value) > MAX_PASSPHRASE:
        raise UserError(f"The passphrase is too long (at most {MAX_PASSPHRASE} characters).")
    return value


async def new_passphrase(request: web.Request, *, required: bool) -> str | None:
    """The passphrase typed twice, checked; None when both fields are empty and
    it is optional."""
    first = await passphrase_field(request, "passphrase")
    again = await passphrase_field(request, "passphrase2")
    if not first and not again:
        if required:
            raise UserError("Type the new passphrase twice.")
        return None
    if first != again:
        raise UserError("The two passphrases differ; type the same one twice.")
    if len(first) < MIN_PASSPHRASE:
        raise UserError(
            f"Choose a passphrase of at least {MIN_PASSPHRASE} characters; "
            "a few unrelated words are easy to remember and hard to guess."
        )
    if not first.strip():
        raise UserError("A passphrase of only spaces protects nothing; choose words.")
    return first


async def apply_passphrase(request: web.Request, passphrase: str | None) -> None:
    await asyncio.to_thread(service(request).set_passphrase, passphrase)


async def passphrase_set(request: web.Request) -> web.StreamResponse:
    back_to(request, "/identities#passphrase")
    changed = service(request).keys_encrypted()
    passphrase = await new_passphrase(request, required=True)
    await apply_passphrase(request, passphrase)
    require_session(request).flash(
        "ok",
        ("Passphrase changed." if changed else "Your keys are now encrypted with the passphrase.")
        + " Give it when ParanoIM starts (PARANOIM_PASSPHRASE or the prompt).",
    )
    raise see_other("/identities#passphrase")


async def passphrase_clear(request: web.Request) -> web.StreamResponse:
    back_to(request, "/identities#passphrase")
    if (await request.post()).get("understood") != "yes":
        raise UserError(
            "To store the keys without a passphrase, tick the box saying you understand "
            "that anyone who copies the key file can then use your identities."
        )
    await apply_passphrase(request, None)
    require_session(request).flash(
        "ok", "The passphrase is removed: the key file is now stored unencrypted."
    )
    raise see_other("/identities#passphrase")
