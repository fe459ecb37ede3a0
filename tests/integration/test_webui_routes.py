"""Every web UI route over real loopback sockets, driven the way a browser drives it.

The service is the in-memory test double (tests/web/fake_service.py); what is
checked here is what the person sees: pages, redirects, flash messages with the
service's own UserError text, downloads, uploads and the live progress stream.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import re

import segno
from aiohttp import FormData
from PIL import Image

from tests.web.fake_service import FakeService
from tests.web.harness import UI, served_ui
from webui.qr import invitation_svg


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'class="flash flash-\w+"[^>]*>([^<]*)<', page)]


async def text_of(resp: object) -> str:
    return await resp.text()  # type: ignore[attr-defined, no-any-return]


async def alice(ui: UI) -> str:
    return (await ui.service.create_identity("Alice")).address


async def stranger() -> str:
    return (await FakeService().create_identity("Stranger")).address


# --- start --------------------------------------------------------------------


async def test_index_sends_first_run_to_start_and_later_to_identities() -> None:
    async with served_ui() as ui:
        resp = await ui.client.get("/", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (303, "/start")
        await alice(ui)
        resp = await ui.client.get("/", allow_redirects=False)
        assert resp.headers["Location"] == "/identities"


async def test_start_creates_identity_then_shows_client_settings() -> None:
    async with served_ui() as ui:
        page = await text_of(await ui.client.get("/start"))
        assert "Create your identity" in page
        resp = await ui.post("/start", {"nick": "Alice"})
        assert resp.status == 200
        page = await text_of(resp)
        (ident,) = ui.service.identities()
        assert f"{ident.username}@paranoim.localhost" in page
        assert ident.xmpp_password in page
        assert 'value="127.0.0.1"' in page and 'value="5222"' in page
        assert ui.service.fingerprint.replace(":", ":<wbr>") in page
        assert "Identity “Alice” created" in " ".join(flashes(page))


async def test_start_with_empty_nickname_says_what_to_do() -> None:
    async with served_ui() as ui:
        page = await text_of(await ui.post("/start", {"nick": "  "}))
        assert any("nickname" in f for f in flashes(page))
        assert ui.service.identities() == []


async def test_start_with_unknown_identity_flashes_and_falls_back() -> None:
    async with served_ui() as ui:
        await alice(ui)
        resp = await ui.client.get("/start?id=nosuch")
        assert resp.url.path == "/start" and not resp.url.query_string
        assert any("no identity" in f for f in flashes(await text_of(resp)))


# --- identities ---------------------------------------------------------------


async def test_identities_list_create_and_rename() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        page = await text_of(await ui.client.get("/identities"))
        assert a in page and "data-copy=" in page
        page = await text_of(await ui.post("/identities/create", {"nick": "Work"}))
        assert "Identity “Work” created." in flashes(page)
        page = await text_of(await ui.post(f"/identities/{a}/rename", {"nick": "Alicia"}))
        assert "Renamed to “Alicia”." in flashes(page)
        assert ui.service.identity(a).nick == "Alicia"
        page = await text_of(await ui.post(f"/identities/{a}/rename", {"nick": ""}))
        assert any("nickname" in f for f in flashes(page))
        page = await text_of(await ui.post("/identities/nosuch/rename", {"nick": "X"}))
        assert any("no identity" in f for f in flashes(page))


async def test_delete_needs_confirmation_by_nickname() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        page = await text_of(await ui.client.get(f"/identities/{a}/delete"))
        assert "Delete “Alice”?" in page and a in page
        resp = await ui.post(f"/identities/{a}/delete", {"confirm": "alice"})
        assert resp.url.path == f"/identities/{a}/delete"
        assert any("type the identity's nickname" in f for f in flashes(await text_of(resp)))
        assert ui.service.identities()
        page = await text_of(await ui.post(f"/identities/{a}/delete", {"confirm": "Alice"}))
        assert "Identity “Alice” deleted." in flashes(page)
        assert ui.service.identities() == []
        resp = await ui.client.get(f"/identities/{a}/delete")
        assert resp.status == 400


async def test_export_downloads_encrypted_file_and_import_restores_it() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        secret_hex = ui.service._identities[a].secret.hex()
        page = await text_of(
            await ui.post(f"/identities/{a}/export", {"passphrase": "x", "passphrase2": "y"})
        )
        assert any("passphrases differ" in f for f in flashes(page))
        page = await text_of(
            await ui.post(
                f"/identities/{a}/export", {"passphrase": "short", "passphrase2": "short"}
            )
        )
        assert any("at least 8 characters" in f for f in flashes(page))
        resp = await ui.post(
            f"/identities/{a}/export",
            {"passphrase": "correct horse", "passphrase2": "correct horse"},
        )
        assert resp.status == 200
        assert resp.headers["Content-Disposition"].startswith(
            f'attachment; filename="paranoim-Alice-{a[:8]}.key"'
        )
        assert resp.headers["Cache-Control"] == "no-store"
        blob = await resp.read()
        assert secret_hex.encode() not in blob and bytes.fromhex(secret_hex) not in blob

    async with served_ui() as other:

        def upload(passphrase: str, data: bytes = blob) -> FormData:
            form = FormData()
            form.add_field("passphrase", passphrase)
            form.add_field(
                "file", data, filename="backup.key", content_type="application/octet-stream"
            )
            return form

        token = await other.csrf()
        headers = {"Origin": other.origin, "X-CSRF-Token": token}
        resp = await other.client.post(
            "/identities/import", data=upload("wrong one"), headers=headers
        )
        assert any("Wrong passphrase" in f for f in flashes(await text_of(resp)))
        resp = await other.client.post(
            "/identities/import", data=upload("x", b"junk"), headers=headers
        )
        assert any("not a ParanoIM identity file" in f for f in flashes(await text_of(resp)))
        resp = await other.client.post(
            "/identities/import", data=upload("correct horse"), headers=headers
        )
        page = await text_of(resp)
        assert "Identity “Alice” imported." in flashes(page)
        assert [i.address for i in other.service.identities()] == [a]


async def test_no_page_ever_contains_a_private_key() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        secret = ui.service._identities[a].secret
        for path in [
            "/start",
            "/identities",
            f"/invite/{a}",
            f"/contacts/{a}",
            "/node",
            f"/identities/{a}/delete",
            "/vanity?prefix=ab&nick=x",
        ]:
            body = await (await ui.client.get(path)).read()
            assert secret.hex().encode() not in body, path
            assert secret not in body, path


# --- vanity -------------------------------------------------------------------


async def test_vanity_estimate_then_invalid_prefixes_get_clear_messages() -> None:
    async with served_ui(FakeService(vanity_rate=1000)) as ui:
        page = await text_of(await ui.client.get("/vanity?prefix=AB&nick=Bob"))
        assert "About <strong>1\u202f024</strong> keys" in page
        assert 'name="prefix" value="ab"' in page
        for prefix, words in [("b0b", "cannot appear"), ("a" * 11, "would take years")]:
            resp = await ui.client.get(f"/vanity?prefix={prefix}&nick=Bob")
            assert resp.url.path == "/vanity"
            assert any(words in f for f in flashes(await text_of(resp))), prefix
        page = await text_of(await ui.post("/vanity/start", {"prefix": "l0l", "nick": "Bob"}))
        assert any("cannot appear" in f for f in flashes(page))


async def test_vanity_search_streams_progress_and_becomes_an_identity() -> None:
    async with served_ui(FakeService(vanity_rate=300)) as ui:
        resp = await ui.post("/vanity/start", {"prefix": "ab", "nick": "Bob"})
        assert re.fullmatch(r"/vanity/jobs/\w+", resp.url.path)
        page = await text_of(resp)
        assert '<progress id="vanity-bar"' in page and "Cancel search" in page
        events = await ui.client.get(resp.url.path + "/events")
        assert events.headers["Content-Type"] == "text/event-stream"
        seen: list[dict[str, object]] = []
        async for line in events.content:
            if line.startswith(b"data: "):
                seen.append(json.loads(line[6:]))
                if seen[-1]["state"] != "running":
                    break
        assert seen[-1]["state"] == "done"
        attempts = [int(e["attempts"]) for e in seen]  # type: ignore[call-overload]
        assert attempts == sorted(attempts) and attempts[-1] > attempts[0]
        assert {"rate_text", "elapsed_text", "remaining_text", "fraction"} <= set(seen[0])
        address = str(seen[-1]["address"])
        assert address.startswith("ab")
        assert ui.service.identity(address).nick == "Bob"
        page = await text_of(await ui.client.get(resp.url.path))
        assert "Found!" in page and address in page
        assert "/vanity/jobs/" in await text_of(await ui.client.get("/vanity"))


async def test_vanity_cancel_stops_the_search() -> None:
    async with served_ui(FakeService(vanity_rate=200)) as ui:
        resp = await ui.post("/vanity/start", {"prefix": "zzzzz", "nick": "Zed"})
        job_path = resp.url.path
        await asyncio.sleep(0.3)
        page = await text_of(await ui.post(job_path + "/cancel"))
        assert "The search for “zzzzz” was cancelled." in flashes(page)
        for _ in range(50):
            if "badge state-cancelled" in (page := await text_of(await ui.client.get(job_path))):
                break
            await asyncio.sleep(0.05)
        assert "badge state-cancelled" in page
        events = await text_of(await ui.client.get(job_path + "/events"))
        assert '"state": "cancelled"' in events
        assert [i.nick for i in ui.service.identities()] == []


async def test_unknown_vanity_job_is_404() -> None:
    async with served_ui() as ui:
        for path in ["/vanity/jobs/nosuch", "/vanity/jobs/nosuch/events"]:
            resp = await ui.client.get(path)
            assert resp.status == 404
            assert "Not found" in await text_of(resp)
        assert (await ui.post("/vanity/jobs/nosuch/cancel")).status == 404


# --- invitations --------------------------------------------------------------


async def test_invite_shows_link_and_qr_of_the_same_link() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        resp = await ui.client.get("/invite")
        assert resp.url.path == f"/invite/{a}"
        page = await text_of(resp)
        link = ui.service.invite_link(a)
        assert f">{html.escape(link)}</textarea>" in page
        assert invitation_svg(link) in page
        assert "<svg" in page and "http" not in invitation_svg(link).replace(
            "http://www.w3.org/2000/svg", ""
        )


async def test_invite_and_contacts_without_identity_send_to_start() -> None:
    async with served_ui() as ui:
        for path in ("/invite", "/contacts"):
            resp = await ui.client.get(path)
            assert resp.status == 400
            assert "Create an identity first" in await text_of(resp)


# --- contacts -----------------------------------------------------------------


async def test_add_contact_by_address_and_by_link() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        bob = FakeService()
        b = (await bob.create_identity("Bob")).address
        page = await text_of(await ui.post(f"/contacts/{a}/add", {"link": b, "petname": "Bobby"}))
        assert "“Bobby” added to your contacts." in flashes(page)
        carol = FakeService()
        c = (await carol.create_identity("Carol")).address
        page = await text_of(await ui.post(f"/contacts/{a}/add", {"link": carol.invite_link(c)}))
        assert "“Carol” added to your contacts." in flashes(page)
        assert {x.address for x in ui.service.contacts(a)} == {b, c}
        assert b in page and c in page


async def test_bad_links_and_addresses_are_refused_with_the_reason() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        b = await stranger()
        typo = b[:10] + ("a" if b[10] != "a" else "b") + b[11:]
        link = FakeService()
        ident = await link.create_identity("Dan")
        good = link.invite_link(ident.address)
        cases = [
            ("", "Paste the invitation link"),
            (b[:-3], "56 characters"),
            (typo, "checksum"),
            (good[:-2], "checksum"),
            ("paranoim:9/" + b + "?c=aaaaaa", "checksum"),
            ("hello world", "neither a ParanoIM link"),
        ]
        for text, words in cases:
            page = await text_of(await ui.post(f"/contacts/{a}/add", {"link": text}))
            assert any(words in f for f in flashes(page)), (text, flashes(page))
        assert ui.service.contacts(a) == []


def qr_png(text: str) -> bytes:
    buf = io.BytesIO()
    segno.make_qr(text).save(buf, kind="png", scale=6)
    return buf.getvalue()


def photo_of(png: bytes) -> bytes:
    """The code pasted on a grey background, rotated, as a JPEG: a rough phone photo."""
    code = Image.open(io.BytesIO(png)).convert("RGB")
    canvas = Image.new("RGB", (code.width * 3, code.height * 3), (140, 140, 130))
    canvas.paste(code, (code.width, code.height))
    buf = io.BytesIO()
    canvas.rotate(12, expand=True, fillcolor=(140, 140, 130)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


async def scan(ui: UI, owner: str, data: bytes, petname: str = "") -> str:
    form = FormData()
    form.add_field("petname", petname)
    form.add_field("photo", data, filename="code.jpg", content_type="image/jpeg")
    token = await ui.csrf()
    resp = await ui.client.post(
        f"/contacts/{owner}/scan",
        data=form,
        headers={"Origin": ui.origin, "X-CSRF-Token": token},
    )
    return await text_of(resp)


async def test_add_contact_from_a_qr_photo() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        bob = FakeService()
        b = (await bob.create_identity("Bob")).address
        page = await scan(ui, a, photo_of(qr_png(bob.invite_link(b))), "Bob from the café")
        assert "“Bob from the café” added to your contacts." in flashes(page)
        assert [c.address for c in ui.service.contacts(a)] == [b]


async def test_qr_upload_refuses_non_images_and_pictures_without_codes() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        blank = io.BytesIO()
        Image.new("RGB", (300, 300), "white").save(blank, "PNG")
        for data, words in [
            (b"not an image at all", "not a picture"),
            (blank.getvalue(), "No QR code found"),
            (qr_png("hello, not an invite"), "neither a ParanoIM link"),
        ]:
            page = await scan(ui, a, data)
            assert any(words in f for f in flashes(page)), (words, flashes(page))
        assert ui.service.contacts(a) == []


async def test_pending_request_accept_block_remove() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        s = await stranger()
        ui.service.receive_request(a, s, "Eve?")
        page = await text_of(await ui.client.get(f"/contacts/{a}"))
        assert "Requests waiting for you" in page and f"/contacts/{a}/{s}/accept" in page
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/accept"))
        assert "“Eve?” accepted." in flashes(page)
        assert ui.service.contacts(a)[0].state == "accepted"
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/block"))
        assert "“Eve?” blocked." in flashes(page) and "Blocked" in page
        assert ui.service.contacts(a)[0].state == "blocked"
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/remove"))
        assert "Contact removed." in flashes(page)
        assert ui.service.contacts(a) == []
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/remove"))
        assert any("not in this identity's list" in f for f in flashes(page))


async def test_contacts_of_two_identities_are_separate_pages() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        w = (await ui.service.create_identity("Work")).address
        page = await text_of(await ui.client.get(f"/contacts/{w}"))
        assert "Contacts of Work" in page and f'href="/contacts/{a}"' in page
        resp = await ui.client.get("/contacts")
        assert resp.url.path == f"/contacts/{w}"  # the last one looked at


# --- node ---------------------------------------------------------------------


async def test_node_page_peers_add_and_remove() -> None:
    async with served_ui() as ui:
        ui.service.recent_errors.append("peer 192.0.2.9:45069 sent an invalid envelope")
        page = await text_of(await ui.client.get("/node"))
        for words in ["22 bits", "memory", "84.0 KB", "sent an invalid envelope", "No peers"]:
            assert words in page, words
        page = await text_of(await ui.post("/node/peers/add", {"peer": "192.0.2.7:45069"}))
        assert "Peer 192.0.2.7:45069 added." in flashes(page)
        assert "192.0.2.7:45069" in page and "connecting" in page
        page = await text_of(await ui.post("/node/peers/add", {"peer": "nonsense"}))
        assert any("host:port" in f for f in flashes(page))
        page = await text_of(await ui.post("/node/peers/remove", {"peer": "192.0.2.7:45069"}))
        assert "Peer 192.0.2.7:45069 removed." in flashes(page)
        assert ui.service.peers == {}


# --- errors -------------------------------------------------------------------


async def test_unknown_page_and_wrong_method_get_friendly_pages() -> None:
    async with served_ui() as ui:
        resp = await ui.client.get("/nowhere")
        assert resp.status == 404 and "There is no page at this address." in await text_of(resp)
        resp = await ui.client.get("/node/peers/add")
        assert resp.status == 405


async def test_unexpected_service_failure_is_a_500_page_without_internals() -> None:
    class Broken(FakeService):
        def health(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("secret internal detail")

    async with served_ui(Broken()) as ui:
        resp = await ui.client.get("/node")
        assert resp.status == 500
        page = await text_of(resp)
        assert "Something went wrong" in page and "secret internal detail" not in page
