"""A small slixmpp client for tests: log in, send, wait for messages.

It trusts exactly the server certificate it is given (``ca_cert``) and speaks STARTTLS
only (slixmpp would otherwise try direct TLS on the c2s port first).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import slixmpp

from ._common import DriverError, apoll_until


@dataclass(frozen=True, slots=True)
class Received:
    sender: str  # bare JID
    body: str


class SlixClient(slixmpp.ClientXMPP):
    """A slixmpp ClientXMPP that records every chat message it receives."""

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        host: str = "127.0.0.1",
        port: int = 5222,
        ca_cert: Path | str | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__(jid, password)
        self.host = host
        self.port = port
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        if ca_cert is not None:
            self.ca_certs = Path(ca_cert)
        if not verify:
            import ssl

            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.received: list[Received] = []
        self._session = asyncio.Event()
        self._failed: str | None = None
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("failed_auth", self._on_failed_auth)

    async def _on_session_start(self, _event: Any) -> None:
        self.send_presence()
        with contextlib.suppress(Exception):
            await self.get_roster(timeout=10)
        self._session.set()

    def _on_failed_auth(self, _event: Any) -> None:
        self._failed = "authentication failed"
        self._session.set()

    def _on_message(self, msg: Any) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.received.append(Received(str(msg["from"].bare), str(msg["body"])))

    async def start(self, timeout: float = 20.0) -> SlixClient:
        """Connect and wait until the session has started (roster fetched)."""
        self.connect(self.host, self.port)
        try:
            await asyncio.wait_for(self._session.wait(), timeout)
        except TimeoutError:
            raise DriverError(f"{self.boundjid.bare}: no session within {timeout:g}s") from None
        if self._failed:
            raise DriverError(f"{self.boundjid.bare}: {self._failed}")
        return self

    def send_chat(self, to: str, text: str) -> None:
        self.send_message(mto=slixmpp.JID(to), mbody=text, mtype="chat")

    async def wait_for_message(
        self, text: str, sender: str | None = None, timeout: float = 20.0
    ) -> Received:
        """Wait for a chat message containing ``text`` (from ``sender``, if given)."""

        def found() -> Received | None:
            for r in self.received:
                if text in r.body and (sender is None or r.sender == sender):
                    return r
            return None

        return await apoll_until(
            found,
            timeout,
            f"message {text!r} at {self.boundjid.bare}",
            on_timeout=lambda: f"received so far: {self.received!r}",
        )

    async def stop(self, timeout: float = 5.0) -> None:
        if self.is_connected():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.disconnect(), timeout)
