"""profanity (console XMPP client) in tmux, for interop tests.

The account lives in ``~/.local/share/profanity/accounts`` with ``tls.policy=trust`` (the
server's self-signed certificate is accepted). Messages go out as ``/msg JID text``;
incoming ones are read from profanity's own chat log database, which records sender and
body exactly, rather than from the screen, where a new chat only shows a notice.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from ._client import TerminalClient
from ._common import find_program, tail


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    sender: str  # bare JID
    recipient: str
    body: str


class Profanity(TerminalClient):
    program = "profanity"

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        port: int,
        host: str = "127.0.0.1",
        cert_pem: str | None = None,
    ) -> None:
        self.binary = find_program("profanity", "profanity")
        super().__init__(jid, password, port=port, host=host, cert_pem=cert_pem)
        self.account = re.sub(r"[^A-Za-z0-9]", "_", self.localpart) or "account"
        self.data = self.home / ".local" / "share" / "profanity"
        self.debug_log = self.data / "logs" / "profanity.log"
        self.database = self.data / "database" / self.jid.replace("@", "_at_") / "chatlog.db"

    def _configure(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "accounts").write_text(
            f"[{self.account}]\n"
            "enabled=true\n"
            f"jid={self.jid}\n"
            f"server={self.host}\n"
            f"port={self.port}\n"
            f"password={self.password}\n"
            "tls.policy=trust\n"
            "resource=profanity\n"
        )
        (self.data / "accounts").chmod(0o600)

    def _argv(self) -> list[str]:
        return [self.binary, "-a", self.account, "-l", "DEBUG"]

    async def wait_logged_in(self, timeout: float = 30.0) -> None:
        await self.pane.wait_for("logged in successfully", timeout)

    async def send(self, to_jid: str, text: str, timeout: float = 10.0) -> None:
        """Send a chat message as typed by a person: ``/msg JID text``, then Enter."""
        line = f"/msg {to_jid} {text}"
        self.pane.send_literal(line)
        await self.pane.wait_for(line, timeout)
        self.pane.send_keys("Enter")

    def messages(self) -> list[LoggedMessage]:
        """Every chat message in profanity's log database (sent and received)."""
        if not self.database.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=1) as db:
                rows = db.execute(
                    "SELECT from_jid, to_jid, message FROM ChatLogs ORDER BY id"
                ).fetchall()
        except sqlite3.Error:
            return []
        return [LoggedMessage(f, t, m or "") for f, t, m in rows]

    def _diagnostics(self) -> str:
        return self.pane.describe() + "\n" + tail(self.debug_log)
