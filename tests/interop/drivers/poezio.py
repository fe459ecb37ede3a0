"""poezio (console XMPP client on slixmpp) in tmux, for interop tests.

poezio refuses to run as root, so it runs as the test user. Its config gets
``custom_host``/``custom_port`` and ``ca_cert_path`` pointing at the server's certificate
(poezio then pins that key). Typing a command is done as a person would: ``/`` as its own
keystroke, the rest once the input line shows it, then Enter — poezio treats one burst of
keys as a paste. Incoming messages are read from its per-contact text logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._client import TerminalClient
from ._common import apoll_until, find_program, tail

_LOG_LINE = re.compile(r"^M[RI] \d{8}T[\d:]{6,8}Z \d{3} <(?P<nick>[^>]*)>  ?(?P<body>.*)$")


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    contact: str  # the bare JID of the conversation
    nick: str  # who wrote the line: the contact's nick or our own
    body: str


class Poezio(TerminalClient):
    program = "poezio"

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        port: int,
        host: str = "127.0.0.1",
        cert_pem: str | None = None,
    ) -> None:
        self.binary = find_program("poezio", "poezio")
        super().__init__(jid, password, port=port, host=host, cert_pem=cert_pem)
        self.logs = self.home / ".local" / "share" / "poezio" / "logs"

    def _configure(self) -> None:
        cfg = self.home / ".config" / "poezio"
        cfg.mkdir(parents=True, exist_ok=True)
        lines = [
            "[Poezio]",
            f"jid = {self.jid}",
            f"password = {self.password}",
            f"custom_host = {self.host}",
            f"custom_port = {self.port}",
            f"own_nick = {self.localpart}",
            "use_bookmarks_method = local",
            "enable_vcard = false",
            "enable_avatars = false",
        ]
        if self.cert_pem is not None:
            pem = self.home / "server.pem"
            pem.write_text(self.cert_pem)
            lines.append(f"ca_cert_path = {pem}")
        (cfg / "poezio.cfg").write_text("\n".join(lines) + "\n")
        (cfg / "poezio.cfg").chmod(0o600)

    def _argv(self) -> list[str]:
        return [self.binary]

    async def wait_logged_in(self, timeout: float = 30.0) -> None:
        await self.pane.wait_for("Your JID is", timeout)

    def _input_line(self) -> str:
        lines = [ln for ln in self.pane.capture_pane(history=False).splitlines() if ln.strip()]
        return lines[-1].split("│")[-1].strip() if lines else ""

    async def command(self, text: str, timeout: float = 10.0) -> None:
        """Type ``/text`` into poezio and press Enter."""
        self.pane.send_keys("/")
        await apoll_until(
            lambda: self._input_line().startswith("/"),
            timeout,
            "poezio's input line to open",
            on_timeout=self.pane.describe,
        )
        self.pane.send_literal(text)
        await apoll_until(
            lambda: self._input_line().endswith(text[-20:]),
            timeout,
            "poezio to show the typed command",
            on_timeout=self.pane.describe,
        )
        self.pane.send_keys("Enter")

    async def send(self, to_jid: str, text: str) -> None:
        """Send a chat message with ``/message JID text``."""
        await self.command(f"message {to_jid} {text}")

    def messages(self) -> list[LoggedMessage]:
        """Every message line in poezio's per-contact logs."""
        out: list[LoggedMessage] = []
        if not self.logs.is_dir():
            return out
        for path in sorted(self.logs.iterdir()):
            if not path.is_file() or "@" not in path.name:
                continue
            for line in path.read_text(errors="replace").splitlines():
                m = _LOG_LINE.match(line)
                if m:
                    out.append(LoggedMessage(path.name, m["nick"], m["body"]))
        return out

    def _incoming(self, m: LoggedMessage) -> bool:
        return m.nick != self.localpart

    def _peer(self, m: LoggedMessage) -> str:
        return m.contact

    def _diagnostics(self) -> str:
        return self.pane.describe() + "\n" + tail(self.logs / "errors.log")
