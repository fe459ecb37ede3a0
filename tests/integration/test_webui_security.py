"""Web UI refusals over real loopback sockets, with the status a browser would get.

Foreign Host (DNS rebinding), no or wrong access token, missing/wrong/foreign
CSRF token, foreign Origin, cross-site Sec-Fetch-Site, oversize bodies, and the
headers every response carries.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import cast

import pytest
from aiohttp import FormData

from bridge.api import ServiceAPI
from tests.web.harness import TOKEN, real_service, served_ui
from webui import create_app
from webui.security.limits import DEFAULT_LIMIT

PAGES = ["/", "/start", "/identities", "/vanity", "/invite", "/contacts", "/node"]


async def test_foreign_host_is_misdirected_everywhere() -> None:
    async with served_ui() as ui:
        for path in [*PAGES, "/static/style.css", f"/?token={TOKEN}"]:
            resp = await ui.client.get(
                path, headers={"Host": f"evil.example:{ui.port}"}, allow_redirects=False
            )
            assert resp.status == 421, path
            assert "evil" not in await resp.text()
            assert "Set-Cookie" not in resp.headers
        resp = await ui.client.post("/start", headers={"Host": "attacker.test"}, data={"nick": "x"})
        assert resp.status == 421
        assert ui.service.identities() == []


async def test_localhost_name_and_ip_are_both_served() -> None:
    async with served_ui() as ui:
        for host in (f"localhost:{ui.port}", f"127.0.0.1:{ui.port}", f"LOCALHOST:{ui.port}"):
            resp = await ui.client.get("/node", headers={"Host": host})
            assert resp.status == 200, host


async def test_request_without_host_header_is_refused() -> None:
    async with served_ui() as ui:
        reader, writer = await asyncio.open_connection("127.0.0.1", ui.port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        assert b" 421 " in status_line


async def test_no_access_token_gets_the_open_the_link_page() -> None:
    async with served_ui(login=False) as ui:
        for path in PAGES:
            resp = await ui.client.get(path, allow_redirects=False)
            assert resp.status == 403, path
            text = await resp.text()
            assert "Open the web UI with paranoim open" in text
            assert "csrf_token" not in text  # nothing usable leaks to a stranger
        # static files are public so the refusal page is styled
        assert (await ui.client.get("/static/style.css")).status == 200


async def test_wrong_token_sets_no_cookie() -> None:
    async with served_ui(login=False) as ui:
        for bad in ("wrong", TOKEN[:-1], TOKEN + "x", ""):
            resp = await ui.client.get(f"/?token={bad}", allow_redirects=False)
            assert resp.status == 403
            assert "Set-Cookie" not in resp.headers
        assert (await ui.client.get("/start")).status == 403


async def test_token_sets_strict_httponly_cookie_and_redirects_to_clean_url() -> None:
    async with served_ui(login=False) as ui:
        resp = await ui.client.get(f"/vanity?token={TOKEN}&prefix=ab", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/vanity?prefix=ab"
        cookie = resp.headers["Set-Cookie"]
        assert cookie.startswith(f"paranoim_session_{ui.port}=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        assert TOKEN not in cookie
        resp = await ui.client.get("/vanity?prefix=ab")
        assert resp.status == 200
        # a second visit with the token keeps the same session
        again = await ui.client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert again.status == 303 and "Set-Cookie" not in again.headers


async def test_forged_session_cookie_is_refused() -> None:
    async with served_ui(login=False) as ui:
        ui.client.session.cookie_jar.update_cookies({f"paranoim_session_{ui.port}": "forged"})
        assert (await ui.client.get("/start")).status == 403


async def test_post_without_csrf_token_is_refused_and_changes_nothing() -> None:
    async with served_ui() as ui:
        resp = await ui.client.post(
            "/start", data={"nick": "Mallory"}, headers={"Origin": ui.origin}
        )
        assert resp.status == 403
        assert "security token" in await resp.text()
        assert ui.service.identities() == []


async def test_post_with_wrong_csrf_token_is_refused() -> None:
    async with served_ui() as ui:
        real = await ui.csrf()
        altered = real[:-1] + ("A" if real[-1] != "A" else "B")  # never the real one
        for token in ("nope", "", altered):
            resp = await ui.client.post(
                "/start", data={"nick": "M", "csrf_token": token}, headers={"Origin": ui.origin}
            )
            assert resp.status == 403
        assert ui.service.identities() == []


async def test_csrf_token_of_another_session_is_refused() -> None:
    async with real_service() as service, served_ui(service) as first, served_ui(service) as second:
        token_of_first = await first.csrf()
        resp = await second.client.post(
            "/start",
            data={"nick": "M", "csrf_token": token_of_first},
            headers={"Origin": second.origin},
        )
        assert resp.status == 403
        assert service.identities() == []


async def test_csrf_token_in_header_is_accepted() -> None:
    async with served_ui() as ui:
        token = await ui.csrf()
        resp = await ui.client.post(
            "/start",
            data={"nick": "Alice"},
            headers={"X-CSRF-Token": token},
            allow_redirects=False,
        )
        assert resp.status == 303
        assert [i.nick for i in ui.service.identities()] == ["Alice"]


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://127.0.0.1:1",
        "https://127.0.0.1:{port}",
        "http://localhost.evil.example:{port}",
    ],
)
async def test_foreign_origin_is_refused(origin: str) -> None:
    async with served_ui() as ui:
        resp = await ui.post(
            "/start", {"nick": "M"}, headers={"Origin": origin.format(port=ui.port)}
        )
        assert resp.status == 403
        assert "another origin" in await resp.text()
        assert ui.service.identities() == []


async def test_null_origin_needs_same_origin_fetch_metadata() -> None:
    async with served_ui() as ui:
        token = await ui.csrf()
        for site in (None, "cross-site", "none"):
            headers = {"Origin": "null"} | ({"Sec-Fetch-Site": site} if site else {})
            resp = await ui.client.post(
                "/start", data={"nick": "M", "csrf_token": token}, headers=headers
            )
            assert resp.status == 403, site
        assert ui.service.identities() == []
        # exactly what Chromium sends for our own form under Referrer-Policy: no-referrer
        resp = await ui.client.post(
            "/start",
            data={"nick": "Alice", "csrf_token": token},
            headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
            allow_redirects=False,
        )
        assert resp.status == 303


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
async def test_cross_site_fetch_metadata_is_refused(site: str) -> None:
    async with served_ui() as ui:
        resp = await ui.post("/start", {"nick": "M"}, headers={"Sec-Fetch-Site": site})
        assert resp.status == 403
        assert "another site" in await resp.text()
        assert ui.service.identities() == []


async def test_every_post_route_refuses_without_csrf() -> None:
    async with served_ui() as ui:
        await ui.service.create_identity("Alice")
        a = ui.service.identities()[0].address
        job = ui.service.start_vanity("zzzz", "Z")
        posts = [
            "/start",
            "/identities/create",
            "/identities/import",
            f"/identities/{a}/rename",
            f"/identities/{a}/delete",
            f"/identities/{a}/export",
            "/identities/passphrase",
            "/identities/passphrase/clear",
            "/vanity/start",
            f"/vanity/jobs/{job.id}/cancel",
            f"/contacts/{a}/add",
            f"/contacts/{a}/scan",
            f"/contacts/{a}/{a}/accept",
            f"/contacts/{a}/{a}/block",
            f"/contacts/{a}/{a}/remove",
            "/node/peers/add",
            "/node/peers/remove",
        ]
        for path in posts:
            resp = await ui.client.post(path, data={"nick": "x"}, headers={"Origin": ui.origin})
            assert resp.status == 403, path
        assert job.progress().cancelled is False
        assert [i.nick for i in ui.service.identities()] == ["Alice"]
        assert not ui.service.keys_encrypted()


async def test_security_headers_on_pages_refusals_static_and_events() -> None:
    async with served_ui() as ui:
        job = ui.service.start_vanity("a", "A")
        responses = [
            await ui.client.get("/identities"),
            await ui.client.get("/static/app.js"),
            await ui.client.get(f"/vanity/jobs/{job.id}/events"),
            await ui.client.get("/nowhere"),
            await ui.client.post("/start", data={}),
            await ui.client.get("/", headers={"Host": "evil.example"}),
        ]
        for resp in responses:
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            await resp.read()


async def test_pages_load_nothing_external_and_run_no_inline_code() -> None:
    async with served_ui() as ui:
        await ui.service.create_identity("Alice")
        a = ui.service.identities()[0].address
        for path in [*PAGES, f"/invite/{a}", f"/contacts/{a}", f"/identities/{a}/delete"]:
            html = await (await ui.client.get(path)).text()
            for url in re.findall(r'(?:src|href|action)="([^"]*)"', html):
                assert url.startswith("/") and not url.startswith("//"), (path, url)
            assert "<style" not in html and " style=" not in html, path
            for script in re.findall(r"<script[^>]*>(.*?)</script>", html, re.S):
                assert script.strip() == "", path
            assert not re.search(r"\son\w+=", html), path


async def test_oversize_form_body_is_refused_before_reading() -> None:
    async with served_ui() as ui:
        token = await ui.csrf()
        resp = await ui.client.post(
            "/start",
            data={"nick": "x" * (DEFAULT_LIMIT + 1), "csrf_token": token},
            headers={"Origin": ui.origin},
        )
        assert resp.status == 413
        assert ui.service.identities() == []


async def test_oversize_photo_upload_is_refused() -> None:
    async with served_ui() as ui:
        await ui.service.create_identity("Alice")
        a = ui.service.identities()[0].address
        form = FormData()
        form.add_field("csrf_token", await ui.csrf())
        form.add_field(
            "photo", b"\0" * (9 * 1024 * 1024), filename="big.jpg", content_type="image/jpeg"
        )
        resp = await ui.client.post(f"/contacts/{a}/scan", data=form, headers={"Origin": ui.origin})
        assert resp.status == 413
        assert "too large" in await resp.text()


async def test_chunked_body_without_length_is_refused() -> None:
    async with served_ui() as ui:

        async def body() -> AsyncIterator[bytes]:
            yield b"nick=x"

        resp = await ui.client.post(
            "/start",
            data=body(),
            headers={"Origin": ui.origin, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert resp.status == 411


def test_factory_refuses_weak_token_or_no_hosts() -> None:
    with pytest.raises(ValueError):
        create_app(cast(ServiceAPI, None), access_token="short", allowed_hosts={"127.0.0.1:1"})
    with pytest.raises(ValueError):
        create_app(cast(ServiceAPI, None), access_token=TOKEN, allowed_hosts=set())
