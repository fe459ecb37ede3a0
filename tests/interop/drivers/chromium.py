"""Debian's headless Chromium driven by Playwright (never Playwright's own browser download).

``launch_browser()`` starts /usr/bin/chromium with the flags that keep it quiet on a closed
network; ``screenshot()`` saves PNGs under ``tests/artifacts/`` for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import ProgramMissing, find_program

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    return find_program("chromium", "chromium")


def playwright_available() -> bool:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True


@asynccontextmanager
async def launch_browser(*, extra_args: list[str] | None = None) -> AsyncIterator[Browser]:
    """A fresh headless Chromium with an empty profile; closed on exit."""
    executable = chromium_path()
    if not playwright_available():
        raise ProgramMissing("playwright (Python package)", "pip: playwright")
    from playwright.async_api import async_playwright

    # Playwright gives the browser a fresh temporary profile of its own.
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*CHROMIUM_ARGS, *(extra_args or [])],
            timeout=30_000,
        )
        try:
            yield browser
        finally:
            await browser.close()


def artifact_path(name: str, suffix: str = ".png") -> Path:
    """``tests/artifacts/<name><suffix>`` with the name made safe for a file system."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "page"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{safe}{suffix}"


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` as ``tests/artifacts/<name>.png``; return its path."""
    path = artifact_path(name)
    await page.screenshot(path=str(path), full_page=full_page)
    return path
