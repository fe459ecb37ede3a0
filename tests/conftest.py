"""Fixtures for every test layer, and the rule that CI never skips a real-program test.

- ``free_port()``: a factory of free loopback TCP ports (pytest-asyncio's
  ``unused_tcp_port`` / ``unused_tcp_port_factory`` work too).
- ``data_dir``: a fresh 0700 data directory for a daemon or store.
- ``prosody``, ``prosody_component``, ``tor``, ``microsocks``: real servers from the drivers,
  started and stopped around the test.
- ``browser``, ``page``, ``new_page``: headless Chromium via Playwright; ``page`` saves a
  screenshot of its final state under ``tests/artifacts/``.

Tests under tests/interop/ are marked ``interop`` and tests under tests/web/ ``web``
automatically. With CI set, such a test that skips (a program or package missing) is
reported as a failure instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.daemonproc import Paranoim
from tests.daemonproc import sandboxes as make_sandboxes
from tests.interop.drivers._common import ProgramMissing
from tests.util import free_tcp_port, in_ci, skip_or_fail

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

    from tests.interop.drivers import Microsocks, Prosody, Tor

_ROOT = Path(__file__).resolve().parent
_LAYER_MARKS = {"interop": "interop", "web": "web"}


# --- markers and the CI skip rule ------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(_ROOT)
        except ValueError:
            continue
        mark = _LAYER_MARKS.get(rel.parts[0]) if rel.parts else None
        if mark and item.get_closest_marker(mark) is None:
            item.add_marker(getattr(pytest.mark, mark))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not (in_ci() and report.skipped and not hasattr(report, "wasxfail")):
        return report
    if item.get_closest_marker("interop") or item.get_closest_marker("web"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"interop/web test skipped in CI, which must run it: {reason}"
    return report


# --- general ---------------------------------------------------------------------------


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for a free 127.0.0.1 TCP port; never the same port twice in a run."""
    return free_tcp_port


@pytest.fixture
def pim(tmp_path: Path) -> Iterator[Paranoim]:
    """One sandbox (its own HOME, config and data dir) for ``paranoim`` commands; its
    daemon, if one was started, is killed at the end of the test."""
    p = Paranoim(tmp_path)
    yield p
    p.cleanup()


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[Callable[[str], Paranoim]]:
    """Named sandboxes (``paranoim`` with its own HOME, config and data dir) whose P2P
    node listens on loopback only; their daemons are killed at the end of the test."""
    yield from make_sandboxes(tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A new, empty, private (0700) data directory."""
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


# --- real servers ----------------------------------------------------------------------


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    """A running Prosody on free ports with VirtualHost "localhost", no component."""
    from tests.interop.drivers import Prosody

    try:
        server = Prosody()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    with server:
        yield server


@pytest.fixture
def prosody_component() -> Iterator[Prosody]:
    """A running Prosody with Component "p2p.localhost" (secret in ``component_secret``)
    and XEP-0356 privileges granted to it through mod_privilege."""
    from tests.interop.drivers import Prosody

    try:
        server = Prosody(component="p2p.localhost")
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    with server:
        yield server


@pytest.fixture
def tor() -> Iterator[Tor]:
    """A running tor with DisableNetwork 1; ``tor.control()`` gives an authenticated link."""
    from tests.interop.drivers import Tor

    try:
        proc = Tor()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    with proc:
        yield proc


@pytest.fixture
def microsocks() -> Iterator[Microsocks]:
    """A running microsocks SOCKS5 server without authentication (``microsocks.url``)."""
    from tests.interop.drivers import Microsocks

    try:
        proc = Microsocks()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    with proc:
        yield proc


# --- browser ---------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Debian Chromium (Playwright), closed after the test."""
    from tests.interop.drivers.chromium import launch_browser

    try:
        cm = launch_browser()
        instance = await cm.__aenter__()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    try:
        yield instance
    finally:
        await cm.__aexit__(None, None, None)


@pytest.fixture
async def new_page(
    browser: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """``await new_page(width=390, height=844)``: a page in its own context; each page's
    final state is saved as tests/artifacts/<test>-<n>.png."""
    from tests.interop.drivers.chromium import screenshot

    pages: list[Page] = []

    async def make(width: int = 1280, height: int = 800, **context: Any) -> Page:
        ctx = await browser.new_context(viewport={"width": width, "height": height}, **context)
        page = await ctx.new_page()
        pages.append(page)
        return page

    yield make
    for n, page in enumerate(pages):
        if not page.is_closed():
            suffix = "" if n == 0 else f"-{n}"
            # A failed screenshot must not hide the test's own result.
            with contextlib.suppress(Exception):
                await screenshot(page, f"{request.node.name}{suffix}-final")
            await page.context.close()


@pytest.fixture
async def page(new_page: Callable[..., Awaitable[Page]]) -> Page:
    """A 1280×800 page; its final state is saved under tests/artifacts/."""
    return await new_page()
