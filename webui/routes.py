"""URL map of the web UI. Every state change is a POST from a form carrying a CSRF token."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from webui.views import contacts, identities, invite, live, node, passphrase, start, vanity

STATIC_DIR = Path(__file__).parent / "static"


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", start.index, name="index")
    r.add_get("/start", start.start_page, name="start")
    r.add_post("/start", start.start_create)

    r.add_get("/identities", identities.identities_page, name="identities")
    r.add_post("/identities/create", identities.identity_create)
    r.add_post("/identities/import", identities.identity_import)
    r.add_post("/identities/passphrase", passphrase.passphrase_set)
    r.add_post("/identities/passphrase/clear", passphrase.passphrase_clear)
    r.add_post("/identities/{address}/rename", identities.identity_rename)
    r.add_get("/identities/{address}/delete", identities.identity_delete_confirm)
    r.add_post("/identities/{address}/delete", identities.identity_delete)
    r.add_post("/identities/{address}/export", identities.identity_export)

    r.add_get("/vanity", vanity.vanity_page, name="vanity")
    r.add_post("/vanity/start", vanity.vanity_start)
    r.add_get("/vanity/jobs/{job_id}", vanity.vanity_job_page)
    r.add_get("/vanity/jobs/{job_id}/events", vanity.vanity_events)
    r.add_post("/vanity/jobs/{job_id}/cancel", vanity.vanity_cancel)

    r.add_get("/invite", invite.invite_redirect, name="invite")
    r.add_get("/invite/{address}", invite.invite_page)

    r.add_get("/contacts", contacts.contacts_redirect, name="contacts")
    r.add_get("/contacts/{owner}", contacts.contacts_page)
    r.add_post("/contacts/{owner}/add", contacts.contact_add)
    r.add_post("/contacts/{owner}/scan", contacts.contact_scan)
    r.add_post("/contacts/{owner}/{address}/accept", contacts.contact_accept)
    r.add_post("/contacts/{owner}/{address}/block", contacts.contact_block)
    r.add_post("/contacts/{owner}/{address}/new-session", contacts.contact_new_session)
    r.add_post("/contacts/{owner}/{address}/remove", contacts.contact_remove)

    r.add_get("/node", node.node_page, name="node")
    r.add_post("/node/peers/add", node.peer_add)
    r.add_post("/node/peers/remove", node.peer_remove)

    r.add_get("/live", live.live_events)

    r.add_static("/static", STATIC_DIR, name="static", append_version=False)
