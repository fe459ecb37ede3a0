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

``Gajim(..., driven=True)`` also installs a small plugin through which the test asks
Gajim to do what a person does with the mouse, by Gajim's own Python API in its own
process: send a file (``HTTPUpload.send_file``, what the chat's "Send File" button
calls once a file is picked), open a chat, and save a picture of its main window.
A request is a JSON file in ``~/driver/``; the plugin answers ``NAME.done`` or
``NAME.error`` (with the traceback). ``trust_https=True`` makes Gajim's HTTP (libsoup,
GnuTLS) trust the daemon's certificate as a system-trusted one, as the docs tell a
person to install it: Gajim runs in a mount namespace of its own in which the
system's CA bundle is that bundle plus the certificate (root only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ._common import DriverError, apoll_until, base_env, find_program, run_as, tail

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SCREEN = "-screen 0 1280x800x24"  # xvfb-run's default is 8 bits a pixel

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
if len(sys.argv) > 4:
    app.settings.set_plugin_setting(sys.argv[4], "active", True)
app.settings.add_account("paranoim")
for key, value in {"name": name, "hostname": "localhost", "password": password,
                   "savepass": True, "resource": "gajim", "active": True,
                   "autoconnect": True, "use_custom_host": True, "custom_host": "127.0.0.1",
                   "custom_port": port, "account_label": "ParanoIM"}.items():
    app.settings.set_account_setting("paranoim", key, value)
app.settings.save()
"""


_PLUGIN_NAME = "paranoim_driver"
_MANIFEST = {
    "name": "ParanoIM test driver", "short_name": _PLUGIN_NAME,
    "description": "Does what the interop tests ask", "authors": ["ParanoIM"],
    "homepage": "https://localhost/", "config_dialog": False, "version": "1.0.0",
    "requirements": ["gajim>=1.7.0"], "platforms": ["linux"],
}
_PLUGIN = """
import json
import traceback
from pathlib import Path

from gi.repository import Gdk, GLib
from nbxmpp.protocol import JID

from gajim.common import app
from gajim.plugins import GajimPlugin


class DriverPlugin(GajimPlugin):
    def init(self):
        self.description = "Does what the interop tests ask"
        self.config_dialog = None
        self.inbox = Path.home() / "driver"
        self.timer = None

    def activate(self):
        self.timer = GLib.timeout_add(100, self.look)

    def deactivate(self):
        if self.timer is not None:
            GLib.source_remove(self.timer)
            self.timer = None

    def look(self):
        for request in sorted(self.inbox.glob("*.json")):
            name = request.stem
            try:
                args = json.loads(request.read_text())
                request.unlink()
                getattr(self, "do_" + args.pop("do"))(**args)
                (self.inbox / (name + ".done")).write_text("ok")
            except Exception:
                (self.inbox / (name + ".error")).write_text(traceback.format_exc())
        return True

    def do_send_file(self, account, jid, path):
        client = app.get_client(account)
        contact = client.get_module("Contacts").get_contact(JID.from_string(jid))
        client.get_module("HTTPUpload").send_file(contact, Path(path))

    def do_show_chat(self, account, jid):
        app.window.add_chat(account, JID.from_string(jid), "contact", select=True)

    def do_screenshot(self, path):
        window = app.window.get_window()
        picture = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(),
                                             window.get_height())
        picture.savev(path, "png", [], [])
"""


class NeedsRoot(DriverError):
    """What was asked of the driver needs root here (a mount namespace)."""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Gajim:
    account = "paranoim"  # the account's name in Gajim

    def __init__(self, localpart: str, password: str, port: int, cert: Path, *,
                 driven: bool = False, trust_https: bool = False) -> None:
        self.binary = find_program("gajim", "gajim")
        self.xvfb = find_program("xvfb-run", "xvfb")
        self.dbus = find_program("dbus-run-session", "dbus")
        self.prefix: list[str] = []
        if trust_https:
            if os.geteuid() != 0:
                raise NeedsRoot("trusting the daemon's certificate for Gajim's HTTPS needs "
                                "root: it is bound over the system CA bundle in a mount "
                                "namespace")
            unshare = find_program("unshare", "util-linux")
            self.prefix = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
                           f'mount --bind "$0" {SYSTEM_CA} && exec "$@"']
        self.user = run_as()
        self.home = self.user.make_dir("paranoim-gajim-")
        self.env = base_env(self.home)
        self.log = self.home / "gajim.log"
        self.inbox = self.home / "driver"
        self.proc: subprocess.Popen[bytes] | None = None
        self._requests = 0
        setup = self.home / "setup.py"
        setup.write_text(_SETUP)
        if driven:
            plugin = self.home / ".local" / "share" / "gajim" / "plugins" / _PLUGIN_NAME
            plugin.mkdir(parents=True)
            (plugin / "plugin-manifest.json").write_text(json.dumps(_MANIFEST))
            (plugin / "__init__.py").write_text(_PLUGIN)
            self.inbox.mkdir()
        if trust_https:
            bundle = self.home / "ca-bundle.crt"
            bundle.write_bytes(SYSTEM_CA.read_bytes() + b"\n" + cert.read_bytes())
            self.prefix.append(str(bundle))
        self.user.chown_tree(self.home)
        done = subprocess.run(
            self.user.wrap(["/usr/bin/python3", str(setup), localpart, password, str(port),
                            *([_PLUGIN_NAME] if driven else [])]),
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
                [*self.prefix, *self.user.wrap([self.dbus, "--", self.xvfb, "-a", "-s", SCREEN,
                                                self.binary, "--verbose"])],
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

    async def ask(self, do: str, timeout: float = 20.0, **args: str) -> None:
        """Have the driver plugin do ``do`` (send_file, show_chat, screenshot) in Gajim."""
        self._requests += 1
        name = f"{self._requests:03d}-{do}"
        tmp = self.inbox / f"{name}.tmp"
        tmp.write_text(json.dumps({"do": do, **args}))  # readable; the plugin owns the dir
        tmp.rename(self.inbox / f"{name}.json")
        done, error = self.inbox / f"{name}.done", self.inbox / f"{name}.error"

        def answered() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"Gajim exited with {self.proc.returncode}\n{tail(self.log)}")
            if error.exists():
                raise AssertionError(f"Gajim could not {do}:\n{error.read_text()}")
            return done.exists()

        await apoll_until(answered, timeout, f"Gajim's driver plugin to {do}", interval=0.1,
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
