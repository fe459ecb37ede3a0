"""Dino (GTK 4 XMPP client, Debian ``dino-im``) under Xvfb, for interop tests.

Dino has no setting for the server's host or port: it connects to the JID's domain,
``localhost``, on port 5222, so the daemon it uses must listen there. It trusts only
certificates the system trusts: it runs in a mount namespace of its own in which the
system's CA bundle is that bundle plus the daemon's certificate (root only), as the
docs tell a person to install it. Its account is a row in its own database
(``~/.local/share/dino/dino.db``, made by a first start). It runs as the test user
with ``--print-xmpp=all`` (every stanza on stderr, kept in ``dino.log``), opened on
the conversation named at start (an ``xmpp:`` URI), under ``dbus-run-session`` and
``xvfb-run`` on a display of its own, which ``screenshot`` saves with GDK.

Dino offers no D-Bus method or script through which a test could ask it to send a
file, so ``send_file`` does what a person does, with ``xdotool`` (Debian ``xdotool``)
on that display: a click on the paper clip beside the message field, the path typed
into GTK's file chooser (a path starting with ``/`` opens its location field), Enter,
and Enter again on the "Send a file" panel, whose Send button has the focus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from ._common import (
    DriverError,
    DriverTimeout,
    apoll_until,
    base_env,
    find_program,
    poll_until,
    run_as,
    tail,
)

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SCREEN = "-screen 0 1200x700x24"  # the size of Dino's window at its first start
PAPER_CLIP = (337, 663)  # the attach button, left of the message field, on that screen
SEND_FOCUS = (760, 350)  # anywhere over the conversation
CHOOSER = "Select file"  # the title of Dino's file chooser
CHOOSER_WAIT = 10.0  # seconds a click on the paper clip may take to show the chooser
UPLOAD_REQUEST = "urn:xmpp:http:upload:0}:request"  # a slot request in Dino's stanza log
_SHOT = """
import sys
import gi
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk
root = Gdk.get_default_root_window()
Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height()).savev(
    sys.argv[1], "png", [], [])
"""


class NeedsRoot(DriverError):
    """Trusting the certificate system-wide for Dino alone needs a mount namespace."""


def _free_display() -> int:
    for number in range(140, 400):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() \
                and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise DriverError("no free X display number")


class Dino:
    def __init__(self, jid: str, password: str, cert: Path, name: str = "ParanoIM") -> None:
        """``name``: the account's alias, which Dino shows beside what it sent."""
        self.binary = find_program("dino-im", "dino-im")
        self.xvfb = find_program("xvfb-run", "xvfb")
        self.dbus = find_program("dbus-run-session", "dbus")
        self.xdotool = find_program("xdotool", "xdotool")
        if os.geteuid() != 0:
            raise NeedsRoot("trusting the daemon's certificate for Dino needs root: it is "
                            "bound over the system CA bundle in a mount namespace")
        unshare = find_program("unshare", "util-linux")
        self.jid, self.password, self.name = jid, password, name
        self.user = run_as()
        self.home = self.user.make_dir("paranoim-dino-")
        # GTK's own renderer, not GL: under Xvfb GL is Mesa's llvmpipe, drawing in software
        # on every core. Dino runs a download's HTTP at low priority in its main loop, and
        # on a busy machine redrawing the spinner of a file in progress took every turn of
        # that loop: the GET was not sent, or its answer not read, and the picture stayed
        # "Downloading" with no error (8 tries of 31 with GL, none of 16 with cairo; with
        # the window unmapped, the stalled download finished at once).
        self.env = base_env(self.home, GSK_RENDERER="cairo")
        self.log = self.home / "dino.log"
        self.db = self.home / ".local" / "share" / "dino" / "dino.db"
        self.files = self.db.parent / "files"
        self.display = 0
        self.proc: subprocess.Popen[bytes] | None = None
        bundle = self.home / "ca-bundle.crt"
        bundle.write_bytes(SYSTEM_CA.read_bytes() + b"\n" + cert.read_bytes())
        self.prefix = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
                       f'mount --bind "$0" {SYSTEM_CA} && exec "$@"', str(bundle)]
        self.user.chown_tree(self.home)

    def _launch(self, *args: str) -> subprocess.Popen[bytes]:
        self.display = _free_display()
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [*self.prefix, *self.user.wrap([
                    self.dbus, "--", self.xvfb, "-n", str(self.display), "-f",
                    str(self.home / "xauth"), "-s", SCREEN, self.binary, "--print-xmpp=all",
                    *args])],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def _account_table(self) -> bool:
        if not self.db.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(self.db, timeout=1)) as db:
                return bool(db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'account'").fetchone())
        except sqlite3.Error:
            return False

    def setup(self) -> None:
        """A first start makes Dino's database; then the account goes in, enabled."""
        self.proc = self._launch()
        poll_until(self._account_table, 30, "Dino's database", interval=0.1,
                   on_timeout=lambda: tail(self.log))
        self.stop()
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            db.execute("INSERT INTO account (bare_jid, resourcepart, password, alias, enabled)"
                       " VALUES (?, 'dino', ?, ?, 1)", (self.jid, self.password, self.name))
            db.commit()
        self.user.chown_tree(self.home)

    def start(self, open_chat: str = "") -> Dino:
        self.proc = self._launch(*([f"xmpp:{open_chat}"] if open_chat else []))
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"Dino exited with {self.proc.returncode}\n{tail(self.log)}")

    async def wait_for(self, needle: str, timeout: float = 60.0) -> None:
        """Until ``needle`` is in Dino's log (its stanzas)."""
        def seen() -> bool:
            self._alive()
            return needle in self.text()

        await apoll_until(seen, timeout, f"{needle!r} in Dino's log", interval=0.2,
                          on_timeout=lambda: tail(self.log))

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True,
                                                    timeout=1)) as db:
                return list(db.execute(sql).fetchall())
        except sqlite3.Error:
            return []

    def bodies(self) -> list[str]:
        """The bodies of the messages in Dino's database."""
        return [str(row[0] or "") for row in self._query("SELECT body FROM message")]

    def transfers(self) -> list[tuple[object, ...]]:
        """Dino's file transfers: (direction, file name, size, state, path); direction 1
        is sent, state 0 complete, 2 not started (or in progress: Dino does not store
        that state), 3 failed."""
        return self._query("SELECT direction, file_name, size, state, path FROM file_transfer")

    async def wait_file(self, data: bytes, timeout: float = 60.0) -> Path:
        """Until Dino has stored a file with exactly these bytes."""
        def stored() -> Path | None:
            self._alive()
            if not self.files.is_dir():
                return None
            for path in self.files.iterdir():
                with contextlib.suppress(OSError):
                    if path.stat().st_size == len(data) and path.read_bytes() == data:
                        return path
            return None

        return await apoll_until(
            stored, timeout, "the file in Dino's store", interval=0.2,
            on_timeout=lambda: f"file transfers: {self.transfers()}\n{tail(self.log)}")

    # --- the display ---------------------------------------------------------------------

    def _x(self, *argv: str, timeout: float = 15.0) -> str:
        """Run an X client as Dino's user on Dino's display; its output."""
        env = {**self.env, "DISPLAY": f":{self.display}",
               "XAUTHORITY": str(self.home / "xauth")}
        done = subprocess.run(self.user.wrap(list(argv)), env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return done.stdout

    def _windows(self, name: str) -> list[str]:
        xdotool = self.xdotool
        env = {**self.env, "DISPLAY": f":{self.display}",
               "XAUTHORITY": str(self.home / "xauth")}
        done = subprocess.run(self.user.wrap([xdotool, "search", "--onlyvisible", "--name",
                                              f"^{name}$"]),
                              env=env, capture_output=True, text=True, timeout=15, check=False)
        return done.stdout.split()  # exit status 1: none found

    async def send_file(self, path: Path, timeout: float = 30.0) -> None:
        """Send ``path`` to the open chat as a person does: the paper clip, the path
        typed into the file chooser, then Send. Returns once Dino has asked its server
        for an upload slot."""
        xdotool = self.xdotool
        self._alive()
        asked = self.text().count(UPLOAD_REQUEST)

        def chooser() -> bool:
            self._alive()
            return bool(self._windows(CHOOSER))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:  # the button shows once Dino knows the upload service: click again
            self._x(xdotool, "mousemove", str(PAPER_CLIP[0]), str(PAPER_CLIP[1]), "click", "1")
            try:
                await apoll_until(chooser, min(CHOOSER_WAIT, deadline - loop.time()),
                                  "Dino's file chooser", interval=0.2,
                                  on_timeout=lambda: tail(self.log))
                break
            except DriverTimeout:
                if loop.time() >= deadline:
                    raise
        # No window manager: the keys go where the X focus is, so give it the chooser.
        self._x(xdotool, "search", "--onlyvisible", "--name", f"^{CHOOSER}$", "windowfocus",
                "--sync", "mousemove", "--window", "%1", "20", "20")
        # A path typed from "/" opens the chooser's location field; Enter picks the file.
        self._x(xdotool, "type", "--delay", "30", str(path))
        self._x(xdotool, "key", "Return")

        def picked() -> bool:
            self._alive()
            return not self._windows(CHOOSER)
        await apoll_until(picked, timeout, "the file chooser to take the path", interval=0.2,
                          on_timeout=lambda: tail(self.log))
        # Back over the main window, where the "Send a file" panel's Send has the focus.
        self._x(xdotool, "mousemove", str(SEND_FOCUS[0]), str(SEND_FOCUS[1]))

        def sent() -> bool:
            self._alive()
            if self.text().count(UPLOAD_REQUEST) > asked:
                return True
            self._x(xdotool, "key", "Return")  # again if the panel was not drawn yet
            return False
        await apoll_until(sent, timeout, "Dino to ask for an upload slot", interval=1.0,
                          on_timeout=lambda: tail(self.log))

    def screenshot(self, path: Path) -> None:
        """The whole display Dino is on, as PNG."""
        shot = self.home / "shot.png"
        self._x("/usr/bin/python3", "-c", _SHOT, str(shot), timeout=30)
        shutil.copy(shot, path)

    def stop(self) -> None:
        """Dino, Xvfb and the D-Bus daemons: its whole process group."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
