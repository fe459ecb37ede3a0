"""The web UI in a real headless Chromium: what a person does and sees.

Each test serves the app on a loopback port (the fake service in a thread) and
drives Debian's Chromium through Playwright. Screenshots go to
tests/artifacts/web/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import segno
import zxingcpp
from PIL import Image

from tests.web.browser import ARGS, CHROMIUM, chromium, shot_path
from tests.web.fake_service import FakeService
from tests.web.harness import TOKEN, ThreadedUI

pytestmark = pytest.mark.web

WIDE = {"width": 1100, "height": 820}
NARROW = {"width": 380, "height": 800}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


class Watch:
    """Console errors and CSP violations seen by a page: there must be none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))


def open_ui(browser: Any, ui: ThreadedUI, viewport: dict[str, int] = WIDE) -> tuple[Any, Watch]:
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    watch = Watch(page)
    page.goto(ui.login_url)
    return page, watch


def test_first_run_creates_identity_and_shows_client_settings(browser: Any) -> None:
    with ThreadedUI() as ui:
        page, watch = open_ui(browser, ui)
        assert page.url == f"{ui.url}/start"  # token gone from the address bar
        page.screenshot(path=shot_path("01-start-first-run.png"), full_page=True)
        page.fill("#nick", "Alice")
        page.get_by_role("button", name="Create identity", exact=True).click()
        page.wait_for_selector("#s-jid")
        (ident,) = ui.service.identities()
        assert page.input_value("#s-jid") == f"{ident.username}@paranoim.localhost"
        assert page.input_value("#s-password") == ident.xmpp_password
        assert page.input_value("#s-host") == "127.0.0.1"
        assert page.input_value("#s-port") == "5222"
        assert page.text_content("#s-fp") == ui.service.fingerprint
        page.screenshot(path=shot_path("02-start-client-settings.png"), full_page=True)
        assert watch.errors == []


def test_copy_button_puts_the_address_on_the_clipboard(browser: Any) -> None:
    service = FakeService()
    with ThreadedUI(service) as ui:
        ident = service.create_identity_now("Alice")
        context = browser.new_context(viewport=WIDE)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui.url)
        page = context.new_page()
        watch = Watch(page)
        page.goto(ui.login_url)
        page.goto(f"{ui.url}/identities")
        page.click("[data-copy=addr-1]")
        page.wait_for_selector("button.copied")
        assert page.evaluate("navigator.clipboard.readText()") == ident.address
        page.screenshot(path=shot_path("03-identities.png"), full_page=True)
        assert watch.errors == []


def start_search(page: Any, ui: ThreadedUI, prefix: str, nick: str) -> None:
    page.goto(f"{ui.url}/vanity")
    page.fill("#prefix", prefix)
    page.fill("#vnick", nick)
    page.get_by_role("button", name="Estimate", exact=True).click()
    page.wait_for_selector("#estimate")
    page.get_by_role("button", name="Start searching", exact=True).click()
    page.wait_for_selector("#vanity-bar")


def bar(page: Any) -> tuple[float, str]:
    return (
        float(page.eval_on_selector("#vanity-bar", "b => b.value")),
        page.text_content("#v-attempts") or "",
    )


def test_vanity_progress_bar_moves_live(browser: Any) -> None:
    # a 4-character prefix (about a million keys) cannot end during the test
    with ThreadedUI(FakeService(vanity_rate=2000)) as ui:
        page, watch = open_ui(browser, ui)
        start_search(page, ui, "abcd", "Bob")
        page.wait_for_function("document.getElementById('vanity-bar').value > 0")
        first = bar(page)
        page.screenshot(path=shot_path("05-vanity-progress-1.png"), full_page=True)
        page.wait_for_function(
            "v => document.getElementById('vanity-bar').value > v", arg=first[0] + 0.0005
        )
        second = bar(page)
        page.screenshot(path=shot_path("05-vanity-progress-2.png"), full_page=True)
        assert second[0] > first[0] and second[1] != first[1], (first, second)
        assert "keys/s" in (page.text_content("#v-rate") or "")
        page.get_by_role("button", name="Cancel search", exact=True).click()
        page.wait_for_selector("#v-state .state-cancelled")
        assert watch.errors == []


def test_vanity_two_character_prefix_becomes_an_identity(browser: Any) -> None:
    with ThreadedUI(FakeService(vanity_rate=300)) as ui:
        page, watch = open_ui(browser, ui)
        page.goto(f"{ui.url}/vanity?prefix=ab&nick=Bob")
        assert "1\u202f024" in page.text_content("#estimate")
        page.screenshot(path=shot_path("04-vanity-estimate.png"), full_page=True)
        start_search(page, ui, "ab", "Bob")
        page.wait_for_selector("#v-address", timeout=90_000)  # the page reloads when found
        address = page.text_content("#v-address") or ""
        assert address.startswith("ab")
        assert ui.service.identity(address).nick == "Bob"
        assert float(page.eval_on_selector("#vanity-bar", "b => b.value")) == 1.0
        page.screenshot(path=shot_path("06-vanity-found.png"), full_page=True)
        assert watch.errors == []


def test_vanity_invalid_prefix_is_explained(browser: Any) -> None:
    with ThreadedUI(FakeService(vanity_rate=100)) as ui:
        page, watch = open_ui(browser, ui)
        page.goto(f"{ui.url}/vanity?prefix=b0b&nick=Bob")
        page.wait_for_selector(".flash-error")
        assert "cannot appear" in (page.text_content(".flash-error") or "")
        page.screenshot(path=shot_path("07-vanity-invalid-prefix.png"), full_page=True)
        assert watch.errors == []


def decode_element(page: Any, selector: str, name: str) -> str:
    path = shot_path(name)
    page.locator(selector).screenshot(path=path)
    found = zxingcpp.read_barcodes(Image.open(path))
    assert found, f"no QR code in {path}"
    return str(found[0].text)


def test_invitation_qr_code_decodes_to_the_same_link(browser: Any) -> None:
    service = FakeService()
    with ThreadedUI(service) as ui:
        ident = service.create_identity_now("Alice")
        page, watch = open_ui(browser, ui)
        page.goto(f"{ui.url}/invite")
        link = service.invite_link(ident.address)
        assert page.input_value("#invite-link") == link
        assert decode_element(page, "#qr svg", "08-invite-qr-only.png") == link
        page.screenshot(path=shot_path("09-invite.png"), full_page=True)
        assert watch.errors == []


def test_add_contact_from_a_link_made_by_a_second_daemon(browser: Any) -> None:
    bob_service = FakeService()
    bob = bob_service.create_identity_now("Bob")
    service = FakeService()
    alice = service.create_identity_now("Alice")
    with ThreadedUI(bob_service) as bob_ui, ThreadedUI(service) as ui:
        # Bob's page shows his link; Alice pastes it into hers
        bob_page, _ = open_ui(browser, bob_ui)
        bob_page.goto(f"{bob_ui.url}/invite")
        link = bob_page.input_value("#invite-link")
        page, watch = open_ui(browser, ui)
        page.goto(f"{ui.url}/contacts")
        page.fill("#link", link)
        page.fill("#petname", "Bob (work)")
        page.get_by_role("button", name="Add contact", exact=True).click()
        page.wait_for_selector(".flash-ok")
        assert "“Bob (work)” added" in (page.text_content(".flash-ok") or "")
        assert [c.address for c in service.contacts(alice.address)] == [bob.address]
        assert bob.address in (page.content())
        # a mistyped link is refused with the reason
        page.fill("#link", link[:-1] + ("a" if link[-1] != "a" else "b"))
        page.get_by_role("button", name="Add contact", exact=True).click()
        page.wait_for_selector(".flash-error")
        assert "checksum" in (page.text_content(".flash-error") or "")
        service.receive_request(
            alice.address, FakeService().create_identity_now("E").address, "Eve?"
        )
        page.goto(f"{ui.url}/contacts")
        page.screenshot(path=shot_path("10-contacts.png"), full_page=True)
        page.get_by_role("button", name="Accept", exact=True).click()
        page.wait_for_selector(".flash-ok")
        assert "“Eve?” accepted." in (page.text_content(".flash-ok") or "")
        assert watch.errors == []


def test_add_contact_by_uploading_a_qr_photo(browser: Any, tmp_path: Any) -> None:
    other = FakeService()
    carol = other.create_identity_now("Carol")
    service = FakeService()
    alice = service.create_identity_now("Alice")
    photo = tmp_path / "code.png"
    segno.make_qr(other.invite_link(carol.address)).save(str(photo), scale=8)
    with ThreadedUI(service) as ui:
        page, watch = open_ui(browser, ui)
        page.goto(f"{ui.url}/contacts")
        page.set_input_files("#photo", str(photo))
        page.fill("#scan-petname", "Carol")
        page.get_by_role("button", name="Read code and add", exact=True).click()
        page.wait_for_selector(".flash-ok")
        assert [c.address for c in service.contacts(alice.address)] == [carol.address]
        assert watch.errors == []


def test_narrow_window_pages_fit_without_sideways_scrolling(browser: Any) -> None:
    service = FakeService()
    alice = service.create_identity_now("Alice")
    bob = FakeService().create_identity_now("Bob")
    service.add_contact(alice.address, bob.address, "Bob")
    service.add_peer("192.0.2.7:45069")
    service.recent_errors.append("peer 192.0.2.9:45069 sent an envelope with weak proof of work")
    with ThreadedUI(service) as ui:
        page, watch = open_ui(browser, ui, NARROW)
        for name, path in [
            ("start", f"/start?id={alice.address}"),
            ("identities", "/identities"),
            ("vanity", "/vanity?prefix=ab&nick=Bob"),
            ("invite", f"/invite/{alice.address}"),
            ("contacts", f"/contacts/{alice.address}"),
            ("node", "/node"),
        ]:
            page.goto(ui.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= NARROW["width"], (name, width)
            page.screenshot(path=shot_path(f"narrow-{name}.png"), full_page=True)
        # the QR code still scans at phone width
        page.goto(f"{ui.url}/invite/{alice.address}")
        assert decode_element(page, "#qr svg", "narrow-qr-only.png") == service.invite_link(
            alice.address
        )
        assert watch.errors == []


def test_node_page(browser: Any) -> None:
    service = FakeService()
    with ThreadedUI(service) as ui:
        page, watch = open_ui(browser, ui)
        page.goto(f"{ui.url}/node")
        page.fill("input[name=peer]", "192.0.2.7:45069")
        page.get_by_role("button", name="Add peer", exact=True).click()
        page.wait_for_selector(".flash-ok")
        assert "192.0.2.7:45069" in service.peers
        page.screenshot(path=shot_path("11-node.png"), full_page=True)
        page.get_by_role("button", name="Remove", exact=True).click()
        page.wait_for_selector(".flash-ok")
        assert service.peers == {}
        assert watch.errors == []


def test_without_the_token_the_browser_gets_the_open_the_link_page(browser: Any) -> None:
    with ThreadedUI() as ui:
        page = browser.new_context(viewport=WIDE).new_page()
        resp = page.goto(f"{ui.url}/identities")
        assert resp.status == 403
        assert "Open the link the daemon printed" in page.content()
        page.screenshot(path=shot_path("12-no-token.png"))
        resp = page.goto(f"{ui.url}/?token=wrong")
        assert resp.status == 403


def test_dns_rebinding_gets_misdirected_request(browser: Any) -> None:
    """A foreign name resolving to 127.0.0.1 (as a rebinding attack arranges) is refused."""
    rules = "--host-resolver-rules=MAP rebind.test 127.0.0.1"
    with ThreadedUI() as ui:
        b = browser.browser_type.launch(executable_path=CHROMIUM, args=[*ARGS, rules])
        page = b.new_context().new_page()
        resp = page.goto(f"http://rebind.test:{ui.port}/?token={TOKEN}")
        assert resp.status == 421
        assert page.context.cookies() == []
        # and the real name still works in the same browser
        resp = page.goto(f"http://localhost:{ui.port}/?token={TOKEN}")
        assert resp.status == 200 and page.url == f"http://localhost:{ui.port}/start"
        b.close()


def test_cross_site_form_post_is_refused(browser: Any) -> None:
    """A page on another origin auto-submitting a form at the UI gets 403 and changes nothing."""
    with ThreadedUI() as ui, ThreadedUI() as evil:
        page, _ = open_ui(browser, ui)
        attack = (
            f'<form id="f" method="post" action="{ui.url}/start">'
            '<input name="nick" value="Mallory"><input name="csrf_token" value="guess"></form>'
        )
        page.route(
            f"http://localhost:{evil.port}/attack",
            lambda r: r.fulfill(status=200, content_type="text/html", body=attack),
        )
        page.goto(f"http://localhost:{evil.port}/attack")
        with page.expect_navigation() as nav:
            page.evaluate("document.getElementById('f').submit()")
        # the SameSite=Strict cookie is not sent cross-site, so the request has no session
        assert nav.value.status == 403
        assert "Open the link" in page.content()
        assert ui.service.identities() == []
