"""finch (libpurple's text UI, the core of Pidgin) in tmux, for interop tests.

The account is written to ``~/.purple/accounts.xml`` (require_tls, auto-login) and the
server certificate is pre-seeded in libpurple's tls_peers cache under the connect server's
name, which is what the trust dialog would store. finch runs in its own D-Bus session
(``dbus-run-session``) with ``-d``, its debug output going to a file; messages are sent
through that bus with ``purple-remote`` and read from the ``Recv`` lines of the debug log.
"""

from __future__ import annotations

import html
import re
import subprocess
from dataclasses import dataclass
from xml.sax.saxutils import escape

from ._client import TerminalClient
from ._common import DriverError, apoll_until, find_program, tail

_MESSAGE = re.compile(r"<message\b(?P<attrs>[^>]*)>(?P<inner>.*?)</message>", re.DOTALL)
_FROM = re.compile(r"""\bfrom=(['"])(?P<jid>[^'"]*)\1""")
_BODY = re.compile(r"<body(?:\s[^>]*)?>(?P<body>.*?)</body>", re.DOTALL)
# The line libpurple logs when a connection reaches the connected state.
_CONNECTED = "connection: Activating keepalive"


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    sender: str  # bare JID
    body: str


class Finch(TerminalClient):
    program = "finch"

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        port: int,
        host: str = "127.0.0.1",
        cert_pem: str | None = None,
    ) -> None:
        self.binary = find_program("finch", "finch")
        self.dbus_run_session = find_program("dbus-run-session", "dbus")
        self.purple_remote = find_program("purple-remote", "libpurple-bin")
        super().__init__(jid, password, port=port, host=host, cert_pem=cert_pem)
        self.purple = self.home / ".purple"
        self.debug_log = self.home / "finch-debug.log"
        self.bus_file = self.home / "dbus-address"

    def _configure(self) -> None:
        self.purple.mkdir(parents=True, exist_ok=True)
        if self.cert_pem is not None:
            peers = self.purple / "certificates" / "x509" / "tls_peers"
            peers.mkdir(parents=True, exist_ok=True)
            (peers / self.host).write_text(self.cert_pem)
        (self.purple / "accounts.xml").write_text(
            "<?xml version='1.0' encoding='UTF-8' ?>\n"
            "<account version='1.0'>\n <account>\n"
            "  <protocol>prpl-jabber</protocol>\n"
            f"  <name>{escape(self.jid)}/finch</name>\n"
            f"  <password>{escape(self.password)}</password>\n"
            "  <settings>\n"
            f"   <setting name='connect_server' type='string'>{escape(self.host)}</setting>\n"
            f"   <setting name='port' type='int'>{self.port}</setting>\n"
            "   <setting name='connection_security' type='string'>require_tls</setting>\n"
            "  </settings>\n"
            "  <settings ui='gnt-purple'>\n"
            "   <setting name='auto-login' type='bool'>1</setting>\n"
            "  </settings>\n"
            " </account>\n</account>\n"
        )
        (self.purple / "accounts.xml").chmod(0o600)

    def _argv(self) -> list[str]:
        script = 'printf %s "$DBUS_SESSION_BUS_ADDRESS" > "$1"; shift; exec "$@" -d 2>"$DEBUG_LOG"'
        self.env["DEBUG_LOG"] = str(self.debug_log)
        return [
            self.dbus_run_session,
            "--",
            "/bin/sh",
            "-c",
            script,
            "finch",
            str(self.bus_file),
            self.binary,
        ]

    def debug_text(self) -> str:
        try:
            return self.debug_log.read_text(errors="replace")
        except OSError:
            return ""

    def _diagnostics(self) -> str:
        return self.pane.describe() + "\n" + tail(self.debug_log)

    async def wait_logged_in(self, timeout: float = 30.0) -> None:
        await apoll_until(
            lambda: _CONNECTED in self.debug_text(),
            timeout,
            "finch to connect",
            interval=0.1,
            on_timeout=self._diagnostics,
        )

    async def send(self, to_jid: str, text: str, timeout: float = 10.0) -> None:
        """Send through libpurple's D-Bus interface with ``purple-remote``'s goim URI."""
        address = await apoll_until(
            lambda: self.bus_file.exists() and self.bus_file.read_text().strip(),
            timeout,
            "finch's D-Bus session address",
            on_timeout=self._diagnostics,
        )
        uri = "xmpp:goim?" + "&".join(
            [f"screenname={_uri_escape(to_jid)}", f"message={_uri_escape(text)}"]
        )
        proc = subprocess.run(
            self.user.wrap([self.purple_remote, uri]),
            env={**self.env, "DBUS_SESSION_BUS_ADDRESS": str(address)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or proc.stderr.strip():
            raise DriverError(f"purple-remote failed ({proc.returncode}): {proc.stderr}")

    def messages(self) -> list[LoggedMessage]:
        """Every received chat message with a body, from the debug log's Recv lines."""
        out: list[LoggedMessage] = []
        for m in _MESSAGE.finditer(self.debug_text()):
            sender = _FROM.search(m["attrs"])
            body = _BODY.search(m["inner"])
            if sender and body:
                out.append(
                    LoggedMessage(sender["jid"].split("/", 1)[0], html.unescape(body["body"]))
                )
        return out



def _uri_escape(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="@.-_/")
