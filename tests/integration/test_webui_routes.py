"""Every web UI route over real loopback sockets, driven the way a browser drives it.

The service is the real ``bridge.service.Service`` (key file in a temporary
directory, the worker pool, a real P2P node on loopback; see tests/web/harness.py).
What is checked here is what the person sees: pages, redirects, flash messages
with the service's own UserError text, downloads, uploads, the live progress
stream and the live-page stream, and what the service did (key file, contacts,
peers).
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import os
import re

import aiohttp
import segno
from aiohttp import FormData
from PIL import Image

from bridge.core.identity import Identity
from bridge.core.invite import Invite, encode_invite
from bridge.events import ContactsChanged, ContactState, Event, MessageArrived
from bridge.service import Service
from bridge.store.keystore import MAGIC_SEALED, Keystore, WrongPassphraseError
from tests.util import wait_until
from tests.web.harness import DOMAIN, FINGERPRINT, KDF, UI, real_node, real_service, served_ui
from webui.qr import invitation_svg


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'class="flash flash-\w+"[^>]*>([^<]*)<', page)]


async def text_of(resp: object) -> str:
    return await resp.text()  # type: ignore[attr-defined, no-any-return]


async def alice(ui: UI) -> str:
    return (await ui.service.create_identity("Alice")).address


def new_identity() -> Identity:
    return Identity.from_seed(os.urandom(32))


def stranger() -> str:
    return new_identity().address


def invite_of(nick: str) -> tuple[str, str]:
    """(address, invitation link) of an identity that lives somewhere else."""
    ident = new_identity()
    return ident.address, encode_invite(Invite(public=ident.public, nick=nick, peers=()))


class Events:
    """The service's events as they happen, waited on with a deadline."""

    def __init__(self, service: Service) -> None:
        self.seen: list[Event] = []
        self.changed = asyncio.Event()
        service.subscribe(self._on)

    def _on(self, event: Event) -> None:
        self.seen.append(event)
        self.changed.set()

    async def wait(self, kind: type, timeout: float = 15.0, **match: object) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                for e in self.seen:
                    if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items()):
                        self.seen.remove(e)
                        return e
                self.changed.clear()
                await self.changed.wait()


def seed_hex(service: Service) -> set[str]:
    return {rec.seed for rec in service.keystore.doc.identities}


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
        assert "Create your identity" in page and 'name="passphrase2"' in page
        resp = await ui.post("/start", {"nick": "Alice"})
        assert resp.status == 200
        page = await text_of(resp)
        (ident,) = ui.service.identities()
        assert f"{ident.username}@{DOMAIN}" in page
        assert ident.xmpp_password in page
        assert 'value="127.0.0.1"' in page and 'value="5222"' in page
        assert FINGERPRINT.replace(":", ":<wbr>") in page
        assert "Identity “Alice” created. Now set up your Jabber client." in flashes(page)
        # no passphrase given: the key file is plain
        assert ui.service.keystore.path.read_bytes().startswith(b"PIMK0\n")
        assert not ui.service.keys_encrypted()


async def test_start_with_a_passphrase_encrypts_the_key_file_from_the_first_write() -> None:
    async with served_ui() as ui:
        path = ui.service.keystore.path
        for pp, pp2, words in [
            ("correct horse", "correct horsE", "passphrases differ"),
            ("short", "short", "at least 8 characters"),
            ("        ", "        ", "only spaces"),
        ]:
            page = await text_of(
                await ui.post("/start", {"nick": "Alice", "passphrase": pp, "passphrase2": pp2})
            )
            assert any(words in f for f in flashes(page)), (words, flashes(page))
            assert ui.service.identities() == [] and not path.exists()
        page = await text_of(
            await ui.post(
                "/start",
                {
                    "nick": "Alice",
                    "passphrase": " correct horse ",
                    "passphrase2": " correct horse ",
                },
            )
        )
        assert any("encrypted with your passphrase" in f for f in flashes(page)), flashes(page)
        data = path.read_bytes()
        assert data.startswith(MAGIC_SEALED)
        (ident,) = ui.service.identities()
        assert ident.address.encode() not in data and b"Alice" not in data
        # spaces are part of the passphrase, as the daemon's prompt reads it
        with_spaces = Keystore(path.parent, " correct horse ", **KDF)
        assert with_spaces.load().identities[0].nick == "Alice"
        try:
            Keystore(path.parent, "correct horse", **KDF).load()
        except WrongPassphraseError:
            pass
        else:
            raise AssertionError("the stripped passphrase opened the key file")
        # once encrypted, the first-run page no longer offers a passphrase
        ui.service.delete_identity(ident.address)
        page = await text_of(await ui.client.get("/start"))
        assert 'name="passphrase2"' not in page and "encrypted with the passphrase" in page


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
        assert any("no local identity" in f for f in flashes(await text_of(resp)))


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
        assert any("no local identity" in f for f in flashes(page))


async def test_passphrase_set_change_and_clear_on_the_identities_page() -> None:
    async with served_ui() as ui:
        await alice(ui)
        path = ui.service.keystore.path
        page = await text_of(await ui.client.get("/identities"))
        assert "not encrypted" in page and "PARANOIM_PASSPHRASE" in page
        assert "Remove the passphrase" not in page
        page = await text_of(
            await ui.post("/identities/passphrase", {"passphrase": "", "passphrase2": ""})
        )
        assert any("twice" in f for f in flashes(page)) and path.read_bytes()[:6] == b"PIMK0\n"
        page = await text_of(
            await ui.post(
                "/identities/passphrase",
                {"passphrase": "first phrase", "passphrase2": "first phrase"},
            )
        )
        assert any("now encrypted" in f for f in flashes(page)), flashes(page)
        assert path.read_bytes().startswith(MAGIC_SEALED)
        assert Keystore(path.parent, "first phrase", **KDF).load().identities
        assert "Change passphrase" in page and "Remove the passphrase" in page
        page = await text_of(
            await ui.post(
                "/identities/passphrase",
                {"passphrase": "second phrase", "passphrase2": "second phrase"},
            )
        )
        assert any("Passphrase changed." in f for f in flashes(page))
        assert Keystore(path.parent, "second phrase", **KDF).load().identities
        try:
            Keystore(path.parent, "first phrase", **KDF).load()
        except WrongPassphraseError:
            pass
        else:
            raise AssertionError("the old passphrase still opens the key file")
        page = await text_of(await ui.post("/identities/passphrase/clear", {}))
        assert any("tick the box" in f for f in flashes(page))
        assert path.read_bytes().startswith(MAGIC_SEALED)
        page = await text_of(await ui.post("/identities/passphrase/clear", {"understood": "yes"}))
        assert any("stored unencrypted" in f for f in flashes(page))
        assert path.read_bytes().startswith(b"PIMK0\n") and not ui.service.keys_encrypted()


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
        (secret_hex,) = seed_hex(ui.service)
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
        assert any("not a ParanoIM identity" in f for f in flashes(await text_of(resp)))
        resp = await other.client.post(
            "/identities/import", data=upload("correct horse"), headers=headers
        )
        page = await text_of(resp)
        assert "Identity “Alice” imported." in flashes(page)
        assert [i.address for i in other.service.identities()] == [a]


async def test_no_page_ever_contains_a_private_key() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        (seed,) = seed_hex(ui.service)
        secret_key = Identity.from_seed(bytes.fromhex(seed)).secret_key
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
            assert seed.encode() not in body and bytes.fromhex(seed) not in body, path
            assert secret_key not in body and secret_key.hex().encode() not in body, path


# --- vanity -------------------------------------------------------------------


async def test_vanity_estimate_then_invalid_prefixes_get_clear_messages() -> None:
    async with served_ui() as ui:
        page = await text_of(await ui.client.get("/vanity?prefix=AB&nick=Bob"))
        assert "About <strong>1\u202f024</strong> keys" in page
        assert 'name="prefix" value="ab"' in page
        for prefix, words in [
            ("b0b", "cannot appear"),
            ("a" * 11, "choose a shorter prefix"),
            ("a" * 30, "longer than the universe"),
        ]:
            resp = await ui.client.get(f"/vanity?prefix={prefix}&nick=Bob")
            assert resp.url.path == "/vanity"
            assert any(words in f for f in flashes(await text_of(resp))), prefix
        page = await text_of(await ui.post("/vanity/start", {"prefix": "l0l", "nick": "Bob"}))
        assert any("cannot appear" in f for f in flashes(page))


async def read_events(resp: aiohttp.ClientResponse, until: int = 0) -> list[dict[str, object]]:
    """Progress events until the job ends, or until ``until`` events were read."""
    seen: list[dict[str, object]] = []
    async with asyncio.timeout(60):
        async for line in resp.content:
            if line.startswith(b"data: "):
                seen.append(json.loads(line[6:]))
                if seen[-1]["state"] != "running" or len(seen) == until:
                    break
    return seen


async def test_vanity_search_of_two_characters_becomes_an_identity() -> None:
    async with served_ui() as ui:
        resp = await ui.post("/vanity/start", {"prefix": "ab", "nick": "Bob"})
        assert re.fullmatch(r"/vanity/jobs/[\w-]+", resp.url.path)
        assert '<progress id="vanity-bar"' in await text_of(resp)
        events = await ui.client.get(resp.url.path + "/events")
        assert events.headers["Content-Type"] == "text/event-stream"
        seen = await read_events(events)
        assert seen[-1]["state"] == "done" and seen[-1]["fraction"] == 1.0
        assert int(seen[-1]["attempts"]) > 0  # type: ignore[call-overload]
        assert {"rate_text", "elapsed_text", "remaining_text", "fraction"} <= set(seen[-1])
        address = str(seen[-1]["address"])
        assert address.startswith("ab")
        assert ui.service.identity(address).nick == "Bob"
        page = await text_of(await ui.client.get(resp.url.path))
        assert "Found!" in page and address in page
        assert resp.url.path in await text_of(await ui.client.get("/vanity"))


async def test_vanity_progress_grows_live_and_cancel_stops_the_search() -> None:
    async with served_ui() as ui:
        # five characters: about 33 million keys, minutes of work, so it runs while we watch
        resp = await ui.post("/vanity/start", {"prefix": "zzzzz", "nick": "Zed"})
        job_path = resp.url.path
        seen = await read_events(await ui.client.get(job_path + "/events"), until=4)
        assert [e["state"] for e in seen] == ["running"] * 4
        attempts = [int(e["attempts"]) for e in seen]  # type: ignore[call-overload]
        assert attempts == sorted(attempts) and attempts[-1] > attempts[0], attempts
        assert float(seen[-1]["rate"]) > 0  # type: ignore[arg-type]
        page = await text_of(await ui.post(job_path + "/cancel"))
        assert "The search for “zzzzz” was cancelled." in flashes(page)
        seen = await read_events(await ui.client.get(job_path + "/events"))
        assert seen[-1]["state"] == "cancelled"
        assert "badge state-cancelled" in await text_of(await ui.client.get(job_path))
        assert ui.service.identities() == []


async def test_vanity_page_lists_searches_started_elsewhere() -> None:
    async with served_ui() as ui:
        job = ui.service.start_vanity("ab", "From the command line")
        await job.wait()
        page = await text_of(await ui.client.get("/vanity"))
        assert f"/vanity/jobs/{job.id}" in page and "From the command line" in page


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
        b = stranger()
        page = await text_of(await ui.post(f"/contacts/{a}/add", {"link": b, "petname": "Bobby"}))
        assert "“Bobby” added to your contacts." in flashes(page)
        c, link = invite_of("Carol")
        page = await text_of(await ui.post(f"/contacts/{a}/add", {"link": link}))
        assert "“Carol” added to your contacts." in flashes(page)
        assert {x.address for x in ui.service.contacts(a)} == {b, c}
        assert b in page and c in page
        # No announcement of theirs has come: each row says what that means for privacy,
        # and a new session cannot start yet, with the reason.
        assert page.count("Their session keys have not arrived yet") == 2
        page = await text_of(await ui.post(f"/contacts/{a}/{b}/new-session"))
        assert "Waiting for Bobby's keys: they reach us with their announcement, once they " \
            "are online" in flashes(page)


async def test_bad_links_and_addresses_are_refused_with_the_reason() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        b = stranger()
        typo = b[:10] + ("a" if b[10] != "a" else "b") + b[11:]
        _, good = invite_of("Dan")
        cases = [
            ("", "Paste the invitation link"),
            (b[:-3], "56 characters"),
            (typo, "checksum"),
            (good[:-2], "checksum"),
            ("paranoim:9/" + b + "?c=aaaaaa", "checksum"),
            ("hello world", "neither a ParanoIM link"),
            (a, "own address"),
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
        b, link = invite_of("Bob")
        page = await scan(ui, a, photo_of(qr_png(link)), "Bob from the café")
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


async def test_request_from_the_network_accept_block_unblock_remove() -> None:
    """A stranger's first message arrives through a real node as a request; the page
    accepts, blocks, unblocks (accept on a blocked contact) and removes it."""
    async with (
        real_node() as node,
        real_service(node=node) as service,
        served_ui(service) as ui,
        real_service(node=node) as elsewhere,
    ):
        a = await alice(ui)
        s = (await elsewhere.create_identity("Eve")).address
        events = Events(service)
        await elsewhere.send_message(s, a, "hello, it's Eve")
        await events.wait(ContactsChanged, owner=a)
        page = await text_of(await ui.client.get(f"/contacts/{a}"))
        assert "Requests waiting for you" in page and f"/contacts/{a}/{s}/accept" in page
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/accept"))
        assert f"“{s[:8]}” accepted." in flashes(page)
        assert ui.service.contacts(a)[0].state == ContactState.ACCEPTED
        await events.wait(MessageArrived, sender=s)  # held until accepted, then delivered
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/block"))
        assert f"“{s[:8]}” blocked." in flashes(page) and "Blocked" in page
        assert f"/contacts/{a}/{s}/accept" in page and ">Unblock<" in page
        assert ui.service.contacts(a)[0].state == ContactState.BLOCKED
        await elsewhere.send_message(s, a, "are you there?")
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/accept"))
        assert f"“{s[:8]}” unblocked." in flashes(page)
        assert ui.service.contacts(a)[0].state == ContactState.ACCEPTED
        await elsewhere.send_message(s, a, "after the unblock")
        arrived = await events.wait(MessageArrived, sender=s)
        assert isinstance(arrived, MessageArrived) and arrived.text == "after the unblock"
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/remove"))
        assert "Contact removed." in flashes(page)
        assert ui.service.contacts(a) == []
        page = await text_of(await ui.post(f"/contacts/{a}/{s}/remove"))
        assert any("is not a contact of this identity" in f for f in flashes(page))


async def test_contacts_of_two_identities_are_separate_pages() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        w = (await ui.service.create_identity("Work")).address
        page = await text_of(await ui.client.get(f"/contacts/{w}"))
        assert "Contacts of Work" in page and f'href="/contacts/{a}"' in page
        resp = await ui.client.get("/contacts")
        assert resp.url.path == f"/contacts/{w}"  # the last one looked at


# --- live pages -----------------------------------------------------------------


async def next_change(resp: aiohttp.ClientResponse, timeout: float = 15.0) -> dict[str, str]:
    async with asyncio.timeout(timeout):
        async for line in resp.content:
            if line.startswith(b"data: "):
                change: dict[str, str] = json.loads(line[6:])
                return change
    raise AssertionError("the live stream ended")


async def test_live_stream_names_contact_and_node_changes() -> None:
    async with real_node() as other, served_ui() as ui:
        a = await alice(ui)
        resp = await ui.client.get("/live?topic=contacts")
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        ui.service.add_contact(a, stranger(), "Bob")
        assert await next_change(resp) == {"what": "contacts", "owner": a}
        resp.close()
        resp = await ui.client.get("/live?topic=node")
        ui.service.add_peer(f"127.0.0.1:{other.port}")
        assert await next_change(resp) == {"what": "node"}
        resp.close()
        assert (await ui.client.get("/live?topic=nothing")).status == 404


async def test_live_refresh_does_not_eat_the_next_pages_message() -> None:
    async with served_ui() as ui:
        a = await alice(ui)
        resp = await ui.post(
            f"/contacts/{a}/add", {"link": stranger(), "petname": "Bob"}, allow_redirects=False
        )
        assert resp.status == 303
        # the flash waits for the next ordinary page; a live page's refetch leaves it
        await ui.client.get(f"/contacts/{a}", headers={"X-Live-Refresh": "1"})
        page = await text_of(await ui.client.get(f"/contacts/{a}"))
        assert "“Bob” added to your contacts." in flashes(page)


# --- node ---------------------------------------------------------------------


async def test_node_page_peers_add_connect_and_remove() -> None:
    async with real_node() as other, served_ui() as ui:
        page = await text_of(await ui.client.get("/node"))
        for words in ["8 bits", "in memory", "0 bytes", "No peers", "None."]:
            assert words in page, words
        page = await text_of(await ui.post("/node/peers/add", {"peer": "nonsense"}))
        assert any("host:port" in f for f in flashes(page))
        page = await text_of(await ui.post("/node/peers/add", {"peer": "127.0.0.1:99999"}))
        assert any("host:port" in f for f in flashes(page))
        # a peer nobody listens on: listed as connecting, and the failed dial is an error
        closed = f"127.0.0.1:{other.port + 0}"
        await other.stop()
        page = await text_of(await ui.post("/node/peers/add", {"peer": closed}))
        assert f"Peer {closed} added; connecting." in flashes(page)
        assert closed in page and "connecting" in page
        await wait_until(lambda: ui.service.health().recent_errors, 10)
        assert f"dial {closed}" in await text_of(await ui.client.get("/node"))
        page = await text_of(await ui.post("/node/peers/remove", {"peer": closed}))
        assert f"Peer {closed} removed." in flashes(page)
        assert "No peers" in page
        # a live peer: connected, with its direction and traffic
        async with real_node() as live:
            peer = f"127.0.0.1:{live.port}"
            await ui.post("/node/peers/add", {"peer": peer})
            await wait_until(
                lambda: any(p.get("state") == "active" for p in ui.service.health().peers), 10
            )
            page = await text_of(await ui.client.get("/node"))
            assert peer in page and "state-up" in page and "we connected to them" in page
            assert re.search(r"\d[\d.]* (bytes|KB) in, [\d.]+ (bytes|KB) out", page)
            page = await text_of(await ui.post("/node/peers/remove", {"peer": peer}))
            assert f"Peer {peer} removed." in flashes(page)
            await wait_until(lambda: not ui.service.health().peers, 10)
        page = await text_of(await ui.post("/node/peers/remove", {"peer": peer}))
        assert any("not a peer of this node" in f for f in flashes(page))


# --- errors -------------------------------------------------------------------


async def test_unknown_page_and_wrong_method_get_friendly_pages() -> None:
    async with served_ui() as ui:
        resp = await ui.client.get("/nowhere")
        assert resp.status == 404 and "There is no page at this address." in await text_of(resp)
        resp = await ui.client.get("/node/peers/add")
        assert resp.status == 405


async def test_unexpected_service_failure_is_a_500_page_without_internals() -> None:
    async with served_ui() as ui:

        def broken() -> object:
            raise RuntimeError("secret internal detail")

        ui.service.health = broken  # type: ignore[method-assign, assignment]
        resp = await ui.client.get("/node")
        assert resp.status == 500
        page = await text_of(resp)
        assert "Something went wrong" in page and "secret internal detail" not in page
