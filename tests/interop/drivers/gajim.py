"""Gajim (GTK XMPP client, Debian ``gajim``) under Xvfb, for interop tests.

Gajim refuses to run as root, so it runs as the test user with its own HOME. Its
account is written into Gajim's own settings database by Gajim's own code
(``gajim.common.settings``, run by the system Python as that user): password kept
in the settings (no keyring), the server's host and port given, active. The
daemon's self-signed certificate goes into ``$XDG_DATA_HOME/gajim/cert_store/``,
which Gajim trusts. It runs with ``--verbose`` under ``dbus-run-session`` and
``xvfb-run``; what it did is read from that log, which names every stanza and
state change (``Set MUC state: <room> JOINED`` once the room's self-presence, status
110, came back).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ._common import apoll_until, base_env, find_program, run_as, tail

_SETUP = """
import sys
from gajim.common import configpaths
configpaths.init()
configpaths.create_paths()
from gajim.common import app
from gajim.common.settings import Settings
app.settings = Settings()
app.settings.init()
name, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
app.settings.set("use_keyring", False)
app.settings.add_account("paranoim")
for key, value in {"name": name, "hostname": "localhost", "password": password,
                   "savepass": True, "resource": "gajim", "active": True,
                   "autoconnect": True, "use_custom_host": True, "custom_host": "127.0.0.1",
                   "custom_port": port, "account_label": "ParanoIM"}.items():
    app.settings.set_account_setting("paranoim", key, value)
app.settings.save()
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Gajim:
    def __init__(self, localpart: str, password: str, port: int, cert: Path) -> None:
        self.binary = find_program("gajim", "gajim")
        self.xvfb = find_program("xvfb-run", "xvfb")
        self.dbus = find_program("dbus-run-session", "dbus")
        self.user = run_as()
        self.home = self.user.make_dir("paranoim-gajim-")
        self.env = base_env(self.home)
        self.log = self.home / "gajim.log"
        self.proc: subprocess.Popen[bytes] | None = None
        setup = self.home / "setup.py"
        setup.write_text(_SETUP)
        self.user.chown_tree(self.home)
        done = subprocess.run(
            self.user.wrap(["/usr/bin/python3", str(setup), localpart, password, str(port)]),
            env=self.env, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"Gajim's account setup failed:\n{done.stderr[-3000:]}")
        store = self.home / ".local" / "share" / "gajim" / "cert_store"
        store.mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, store / "paranoim.pem")
        self.user.chown_tree(self.home)

    def start(self) -> Gajim:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.user.wrap([self.dbus, "--", self.xvfb, "-a", self.binary, "--verbose"]),
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    async def wait_count(self, needle: str, count: int, timeout: float = 60.0) -> None:
        """Until ``needle`` is in Gajim's log ``count`` times."""
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"Gajim exited with {self.proc.returncode}\n{tail(self.log)}")
            return self.count(needle) >= count

        await apoll_until(seen, timeout, f"{needle!r} {count}x in Gajim's log", interval=0.2,
                          on_timeout=lambda: tail(self.log))

    def stop(self) -> None:
        """Gajim, Xvfb and the D-Bus daemons: its whole process group."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
                if not _group_alive(proc.pid):
                    return
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 10
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _group_alive(proc.pid):
                return

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
