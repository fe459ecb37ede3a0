"""The optional tray icon: Open web UI, Pause network, Quit.

Needs ``pip install paranoim[tray]`` (pystray and Pillow) and a desktop session;
without either the daemon runs the same, headless. pystray runs its own loop in
a thread, so every menu action is handed to the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.daemon import Daemon

log = logging.getLogger(__name__)


def _icon_image() -> Any:
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((4, 4, 60, 60), radius=14, fill=(32, 84, 147, 255))
    d.ellipse((18, 14, 46, 42), outline=(255, 255, 255, 255), width=5)  # a key's bow
    d.rectangle((29, 40, 35, 54), fill=(255, 255, 255, 255))  # and its shaft
    return img


def has_desktop() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _run_icon(icon: Any) -> None:
    try:
        icon.run()
    except Exception as exc:  # the display went away: the daemon does not need the icon
        log.warning("the tray icon stopped: %s", exc or type(exc).__name__)


def start_tray(daemon: Daemon, loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """Show the icon; returns the function that removes it, or None if there is no tray."""
    if not has_desktop():
        return None
    try:
        import pystray  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except Exception:  # ImportError, or a backend that fails to load
        return None
    # pystray logs a traceback when the desktop has no system tray to dock into;
    # the daemon works the same without the icon, so that is not worth a traceback.
    logging.getLogger("pystray").setLevel(logging.CRITICAL)

    def open_ui(icon: Any, item: Any) -> None:
        if daemon.web_url:
            webbrowser.open(daemon.web_url)

    def toggle_pause(icon: Any, item: Any) -> None:
        loop.call_soon_threadsafe(daemon.pause_network, not daemon.network_paused)

    def quit_(icon: Any, item: Any) -> None:
        loop.call_soon_threadsafe(daemon.request_stop)

    menu = pystray.Menu(
        pystray.MenuItem("Open web UI", open_ui, default=True),
        pystray.MenuItem("Pause network", toggle_pause,
                         checked=lambda item: daemon.network_paused),
        pystray.MenuItem("Quit", quit_),
    )
    try:
        # Connecting to the display can fail (the X server went away, a reset
        # connection): the daemon then runs on without its icon.
        icon = pystray.Icon("paranoim", _icon_image(), "ParanoIM", menu)
        thread = threading.Thread(target=_run_icon, args=(icon,), name="tray", daemon=True)
        thread.start()
    except Exception as exc:
        log.warning("no tray icon: %s", exc or type(exc).__name__)
        return None
    stop: Callable[[], None] = icon.stop
    return stop
