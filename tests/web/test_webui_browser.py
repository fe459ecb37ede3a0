"""The web UI in a real headless Chromium in front of real ``paranoim run`` daemons.

Each daemon is the installed ``paranoim`` executable in its own sandbox (HOME,
data directory, free ports; tests/daemonproc.py); the browser opens the link
`paranoim open --print` gives, token and all, and does what a person does. A slixmpp
client logged in to the first daemon's XMPP port shows that a contact added in
the page reaches the Jabber roster. Async Playwright runs in the test's own
event loop, beside the slixmpp client. Screenshots go to tests/artifacts/ (the
narrow-window ones as tests/artifacts/web-narrow-*.png) for a person to look at;
``PARANOIM_DOC_SHOTS=1`` also refreshes the docs/img/web-*.png that docs/web-ui.md shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zxingcpp
from PIL import Image

from tests.daemonproc import Paranoim, Running
from tests.interop.drivers.chromium import artifact_path, chromium_path, screenshot
from tests.interop.drivers.slix import SlixClient
from tests.util import free_tcp_port

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.web

WIDE = {"width": 1100, "height": 820}
NARROW = {"width": 380, "height": 800}
WAIT_MS = 30_000  # the longest any page condition is waited for
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PageMaker = Callable[..., Awaitable["Page"]]
# the screenshots docs/web-ui.md shows
DOC_SHOTS = frozenset(
    {
        "start",
        "identities",
        "vanity-progress",
        "invite",
        "contacts",
        "node",
        "narrow-start",
        "narrow-invite",
        "narrow-start-first-run",
    }
)


@dataclass
class Daemon:
    """A running ``paranoim run`` and what a test needs of it."""

    sandbox: Paranoim
    proc: Running
    xmpp_port: int
    web_port: int
    p2p_port: int

    @property
    def link(self) -> str:
        """The web UI link with its access token, as `paranoim open --print` gives it."""
        res = self.sandbox.run("open", "--print")
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def start_daemon(root: Path, *, env: dict[str, str] | None = None) -> Daemon:
    """``paranoim run`` on free loopback ports; its invitations name its P2P address."""
    sandbox = Paranoim(root)
    xmpp, web, p2p = free_tcp_port(), free_tcp_port(), free_tcp_port()
    if not sandbox.config_file.exists():
        sandbox.write_config(f'[p2p]\nlisten = "127.0.0.1"\nannounce = "127.0.0.1:{p2p}"\n')
    proc = sandbox.start(
        "run",
        "--xmpp-port",
        str(xmpp),
        "--web-port",
        str(web),
        "--p2p-port",
        str(p2p),
        "--difficulty",
        "8",
        env=env,
    )
    return Daemon(sandbox, proc, xmpp, web, p2p)


@pytest.fixture(scope="module")
def two_daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    chromium_or_skip()
    a = start_daemon(tmp_path_factory.mktemp("alice"))
    try:
        b = start_daemon(tmp_path_factory.mktemp("bob"))
    except BaseException:
        a.sandbox.cleanup()
        raise
    yield a, b
    for d in (a, b):
        assert d.proc.stop() == 0, "\n".join(d.proc.stdout + d.proc.stderr)
        d.sandbox.cleanup()


def chromium_or_skip() -> None:
    from tests.interop.drivers._common import ProgramMissing
    from tests.util import skip_or_fail

    try:
        chromium_path()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))


class Watch:
    """Console errors and CSP violations seen by a page: there must be none."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))


async def open_ui(new_page: PageMaker, daemon: Daemon, viewport: dict[str, int] = WIDE) -> Page:
    page = await new_page(**viewport)
    await page.goto(daemon.link)
    return page


async def shot(page: Page, name: str) -> Path:
    """tests/artifacts/web-<name>.png (and docs/img/ when asked to refresh the docs)."""
    path = await screenshot(page, f"web-{name}")
    if name in DOC_SHOTS and os.environ.get("PARANOIM_DOC_SHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"web-{name}.png")
    return path


async def create_identity(page: Page, daemon: Daemon, nick: str, passphrase: str = "") -> None:
    """The first-run form on the Start page; ends on the client settings."""
    await page.goto(f"{daemon.url}/start")
    await page.fill("#nick", nick)
    if passphrase:
        await page.fill("#passphrase", passphrase)
        await page.fill("#passphrase2", passphrase)
    await page.get_by_role("button", name="Create identity", exact=True).click()
    await page.wait_for_selector("#s-jid")


async def bar(page: Page) -> tuple[float, str]:
    value = await page.eval_on_selector("#vanity-bar", "b => b.value")
    return float(value), (await page.text_content("#v-attempts")) or ""


async def start_search(page: Page, daemon: Daemon, prefix: str, nick: str) -> None:
    await page.goto(f"{daemon.url}/vanity")
    await page.fill("#prefix", prefix)
    await page.fill("#vnick", nick)
    await page.get_by_role("button", name="Estimate", exact=True).click()
    await page.wait_for_selector("#estimate")
    await page.get_by_role("button", name="Start searching", exact=True).click()
    await page.wait_for_selector("#vanity-bar")


async def decode_qr(page: Page, selector: str, name: str) -> str:
    path = artifact_path(f"web-{name}")
    await page.locator(selector).screenshot(path=str(path))
    found = zxingcpp.read_barcodes(Image.open(path))
    assert found, f"no QR code in {path}"
    return str(found[0].text)


# --- first run with a passphrase, and a restart that needs it ---------------------------


async def test_first_run_with_passphrase_encrypts_the_keys_and_the_restart_needs_it(
    tmp_path: Path, new_page: PageMaker
) -> None:
    chromium_or_skip()
    daemon = await asyncio.to_thread(start_daemon, tmp_path)
    try:
        page = await open_ui(new_page, daemon, NARROW)
        watch = Watch(page)
        assert page.url == f"{daemon.url}/start"  # the token is gone from the address bar
        await shot(page, "narrow-start-first-run")
        await page.fill("#nick", "Alice")
        await page.fill("#passphrase", "correct horse battery")
        await page.fill("#passphrase2", "correct horse battery")
        await page.get_by_role("button", name="Create identity", exact=True).click()
        await page.wait_for_selector("#s-jid")
        flash = " ".join(await page.locator(".flash-ok").all_text_contents())
        assert "encrypted with your passphrase" in flash
        key_file = daemon.sandbox.data_dir / "keys.pim"
        assert key_file.read_bytes().startswith(b"PIMK1\n")
        await page.goto(f"{daemon.url}/identities")
        assert "encrypted" in ((await page.text_content("#passphrase")) or "")
        assert watch.errors == []
    finally:
        assert await asyncio.to_thread(daemon.proc.stop) == 0

    ports = [str(free_tcp_port()) for _ in range(3)]
    wrong = await asyncio.to_thread(
        daemon.sandbox.run, "run", "--xmpp-port", ports[0], "--web-port", ports[1],
        "--p2p-port", ports[2], env={"PARANOIM_PASSPHRASE": "wrong horse"},
    )
    assert wrong.returncode == 4, (wrong.stdout, wrong.stderr)
    last = wrong.stderr.strip().splitlines()[-1]
    assert last == (
        "paranoim: error: wrong passphrase for the key file; "
        "try again, or set PARANOIM_PASSPHRASE to the right one"
    ), wrong.stderr
    assert "Traceback" not in wrong.stderr
    again = await asyncio.to_thread(
        start_daemon, tmp_path, env={"PARANOIM_PASSPHRASE": "correct horse battery"}
    )
    try:
        page = await open_ui(new_page, again)
        assert page.url == f"{again.url}/identities"  # Alice is there: the keys opened
        assert "Alice" in ((await page.text_content("main")) or "")
    finally:
        assert await asyncio.to_thread(again.proc.stop) == 0
        daemon.sandbox.cleanup()


# --- two daemons: identity, vanity, QR, contact → roster, live pages ----------------------


async def address_of_current(page: Page, daemon: Daemon) -> str:
    """The address of the identity the page shows (the invitation page names it)."""
    await page.goto(f"{daemon.url}/invite")
    return page.url.rsplit("/", 1)[1]


async def wait_live(page: Page) -> None:
    """Until the page's live stream is open, so no change can slip by unseen."""
    await page.wait_for_function("() => document.body.dataset.live === 'open'", timeout=WAIT_MS)


async def test_identity_vanity_qr_and_a_contact_reaching_the_roster_across_two_daemons(
    two_daemons: tuple[Daemon, Daemon], new_page: PageMaker
) -> None:
    a, b = two_daemons
    # Bob, on the second daemon: an identity and his invitation, whose QR code reads back
    bob_page = await open_ui(new_page, b)
    bob_watch = Watch(bob_page)
    await create_identity(bob_page, b, "Bob")
    bob_address = await address_of_current(bob_page, b)
    bob_link = await bob_page.input_value("#invite-link")
    assert bob_address in bob_link and f"peer=127.0.0.1:{b.p2p_port}" in bob_link
    assert await decode_qr(bob_page, "#qr svg", "invite-qr-only") == bob_link
    await shot(bob_page, "invite")

    # Alice, on the first daemon: the settings to type into her Jabber app
    page = await open_ui(new_page, a)
    watch = Watch(page)
    assert page.url == f"{a.url}/start"
    await create_identity(page, a, "Alice")
    jid = await page.input_value("#s-jid")
    password = await page.input_value("#s-password")
    assert jid.endswith("@localhost")
    assert await page.input_value("#s-port") == str(a.xmpp_port)
    fingerprint = a.proc.line("XMPP").rsplit(" ", 1)[1]
    assert (await page.text_content("#s-fp")) == fingerprint
    await shot(page, "start")
    alice_address = await address_of_current(page, a)

    # a vanity search watched live: five characters run for minutes, two readings grow
    await start_search(page, a, "zzzzz", "Zed")
    await page.wait_for_function(
        "() => document.getElementById('vanity-bar').value > 0", timeout=WAIT_MS
    )
    first = await bar(page)
    await page.wait_for_function(
        "v => document.getElementById('vanity-bar').value > v", arg=first[0], timeout=WAIT_MS
    )
    second = await bar(page)
    assert second[0] > first[0] and second[1] != first[1], (first, second)
    assert "keys/s" in ((await page.text_content("#v-rate")) or "")
    await shot(page, "vanity-progress")
    await page.get_by_role("button", name="Cancel search", exact=True).click()
    await page.wait_for_selector("#v-state .state-cancelled", timeout=WAIT_MS)
    # two characters: about a thousand keys, found at once; the bar ends full
    await page.goto(f"{a.url}/vanity?prefix=ab&nick=Alice%20AB")
    assert "1\u202f024" in ((await page.text_content("#estimate")) or "")
    await start_search(page, a, "ab", "Alice AB")
    await page.wait_for_selector("#v-address", timeout=WAIT_MS)
    vanity_job = page.url
    assert ((await page.text_content("#v-address")) or "").startswith("ab")
    assert (await bar(page))[0] == 1.0
    await shot(page, "vanity-found")

    # Alice's Jabber client on the first daemon, and the two live pages
    client = await SlixClient(jid, password, port=a.xmpp_port, verify=False).start()
    try:
        bob_jid = f"{bob_address}@p2p.localhost"
        pushed = asyncio.Event()

        def on_roster(_iq: Any) -> None:
            if bob_jid in client.client_roster:
                pushed.set()

        client.add_event_handler("roster_update", on_roster)
        node_page = await open_ui(new_page, a)
        await node_page.goto(f"{a.url}/node")
        await wait_live(node_page)
        assert "No peers" in ((await node_page.text_content("#peers")) or "")
        await bob_page.goto(f"{b.url}/contacts/{bob_address}")
        await wait_live(bob_page)
        await bob_page.evaluate("window.sameDocument = true")

        # Alice adds Bob from the link his daemon showed: it reaches her roster at once
        await page.goto(f"{a.url}/contacts/{alice_address}")
        await page.fill("#link", bob_link)
        await page.fill("#petname", "Bob (work)")
        await page.get_by_role("button", name="Add contact", exact=True).click()
        await page.wait_for_selector(".flash-ok")
        assert "“Bob (work)” added" in ((await page.text_content(".flash-ok")) or "")
        await asyncio.wait_for(pushed.wait(), 15)
        assert client.client_roster[bob_jid]["name"] == "Bob (work)"
        assert client.client_roster[bob_jid]["subscription"] == "both"

        # the link carried Bob's node: Alice's node page shows it connect, no reload
        await node_page.wait_for_selector("#peers .state-up", timeout=WAIT_MS)
        assert f"127.0.0.1:{b.p2p_port}" in ((await node_page.text_content("#peers")) or "")
        await shot(node_page, "node")

        # Alice writes first: Bob's open contacts page shows her request, no reload
        client.send_chat(bob_jid, "Hello Bob, it is Alice")
        await bob_page.wait_for_selector("text=Requests waiting for you", timeout=WAIT_MS)
        assert await bob_page.evaluate("window.sameDocument === true")
        assert alice_address in ((await bob_page.text_content("#contact-lists")) or "")
        await shot(bob_page, "contacts")
        await bob_page.get_by_role("button", name="Accept", exact=True).click()
        await bob_page.wait_for_selector(".flash-ok")
        assert "accepted" in ((await bob_page.text_content(".flash-ok")) or "")
    finally:
        await client.stop()

    # every page at phone width: nothing scrolls sideways, and the QR code still scans
    narrow = await open_ui(new_page, a, NARROW)
    narrow_watch = Watch(narrow)
    for name, path in [
        ("start", f"/start?id={alice_address}"),
        ("identities", "/identities"),
        ("vanity", "/vanity?prefix=ab&nick=Bob"),
        ("vanity-job", vanity_job.removeprefix(a.url)),
        ("invite", f"/invite/{alice_address}"),
        ("contacts", f"/contacts/{alice_address}"),
        ("node", "/node"),
        ("delete", f"/identities/{alice_address}/delete"),
    ]:
        await narrow.goto(a.url + path)
        width = await narrow.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW["width"], (name, width)
        await shot(narrow, f"narrow-{name}")
    await narrow.goto(f"{a.url}/invite/{alice_address}")
    alice_link = await narrow.input_value("#invite-link")
    assert await decode_qr(narrow, "#qr svg", "narrow-qr-only") == alice_link
    assert watch.errors == [] and bob_watch.errors == [] and narrow_watch.errors == []


async def test_copy_button_puts_the_address_on_the_clipboard(
    two_daemons: tuple[Daemon, Daemon], new_page: PageMaker
) -> None:
    a, _ = two_daemons
    page = await new_page(**WIDE, permissions=["clipboard-read", "clipboard-write"])
    await page.goto(a.link)
    if page.url.endswith("/start"):
        await create_identity(page, a, "Copier")
    await page.goto(f"{a.url}/identities")
    await page.click("[data-copy=addr-1]")
    await page.wait_for_selector("button.copied")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == await page.input_value("#addr-1")
    await shot(page, "identities")


# --- refusals a browser meets ----------------------------------------------------------


async def test_without_the_token_the_browser_gets_the_open_the_link_page(
    two_daemons: tuple[Daemon, Daemon], browser: Browser
) -> None:
    a, _ = two_daemons
    page = await (await browser.new_context(viewport=WIDE)).new_page()  # type: ignore[arg-type]
    resp = await page.goto(f"{a.url}/identities")
    assert resp is not None and resp.status == 403
    assert "Open the web UI with paranoim open" in await page.content()
    await shot(page, "no-token")
    resp = await page.goto(f"{a.url}/?token=wrong")
    assert resp is not None and resp.status == 403
    await page.context.close()


async def test_dns_rebinding_gets_misdirected_request(two_daemons: tuple[Daemon, Daemon]) -> None:
    """A foreign name resolving to 127.0.0.1 (as a rebinding attack arranges) is refused."""
    from tests.interop.drivers.chromium import launch_browser

    a, _ = two_daemons
    token = a.link.rsplit("token=", 1)[1]
    rules = "--host-resolver-rules=MAP rebind.test 127.0.0.1"
    async with launch_browser(extra_args=[rules]) as rebinding:
        page = await (await rebinding.new_context()).new_page()
        resp = await page.goto(f"http://rebind.test:{a.web_port}/?token={token}")
        assert resp is not None and resp.status == 421
        assert await page.context.cookies() == []
        # and the real name still works in the same browser
        resp = await page.goto(f"http://localhost:{a.web_port}/?token={token}")
        assert resp is not None and resp.status == 200
        assert page.url.startswith(f"http://localhost:{a.web_port}/")


async def test_cross_site_form_post_is_refused(
    two_daemons: tuple[Daemon, Daemon], new_page: PageMaker
) -> None:
    """A page on another origin auto-submitting a form at the UI gets 403, changes nothing."""
    a, _ = two_daemons
    page = await open_ui(new_page, a)
    before = (await page.goto(f"{a.url}/identities")) and await page.content()
    evil = f"http://localhost:{free_tcp_port()}"
    attack = (
        f'<form id="f" method="post" action="{a.url}/identities/create">'
        '<input name="nick" value="Mallory"><input name="csrf_token" value="guess"></form>'
    )

    async def fulfil(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=attack)

    await page.route(f"{evil}/attack", fulfil)
    await page.goto(f"{evil}/attack")
    async with page.expect_navigation() as nav:
        await page.evaluate("document.getElementById('f').submit()")
    # the SameSite=Strict cookie is not sent cross-site, so the request has no session
    response = await nav.value
    assert response is not None and response.status == 403
    assert "Open the web UI with paranoim open" in await page.content()
    await page.goto(f"{a.url}/identities")
    assert "Mallory" not in await page.content() and "Mallory" not in str(before)
