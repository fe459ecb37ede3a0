"""What the terminal-client drivers share: a home dir owned by the test user, a tmux pane."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from ._common import RunAs, apoll_until, base_env, run_as
from .tmux import TmuxSession


class TerminalClient:
    """Base for profanity, poezio and finch drivers: one account, one tmux pane.

    Subclasses write their config in ``_configure()`` and give ``_argv()``. The program
    runs as the unprivileged test user with HOME in a fresh private temp dir.
    """

    program = ""

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        port: int,
        host: str = "127.0.0.1",
        cert_pem: str | None = None,
    ) -> None:
        self.jid = jid
        self.password = password
        self.host = host
        self.port = port
        self.cert_pem = cert_pem
        self.user: RunAs = run_as()
        self.home: Path = self.user.make_dir(f"paranoim-{self.program}-")
        self.env = base_env(self.home)
        self.tmux: TmuxSession | None = None

    @property
    def localpart(self) -> str:
        return self.jid.split("@", 1)[0]

    def _configure(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> TerminalClient:
        self._configure()
        (self.home / ".run").mkdir(mode=0o700, exist_ok=True)
        self.user.chown_tree(self.home)
        self.tmux = TmuxSession(
            self.user.wrap(self._argv()), name=self.program, env=self.env, cwd=self.home
        ).start()
        return self

    @property
    def pane(self) -> TmuxSession:
        if self.tmux is None:
            raise RuntimeError(f"{self.program} not started")
        return self.tmux

    def screen(self) -> str:
        return self.pane.capture_pane()

    # --- reading what arrived (each client logs messages its own way) ---------------

    def messages(self) -> list[Any]:
        """Logged messages, each with at least ``.body``."""
        raise NotImplementedError

    def _incoming(self, m: Any) -> bool:
        """Written by someone else (not our own echo)."""
        return bool(m.sender != self.jid)

    def _peer(self, m: Any) -> str:
        return str(m.sender)

    def _diagnostics(self) -> str:
        return self.pane.describe()

    async def wait_for_message(self, from_or_text: str | re.Pattern[str],
                               timeout: float = 20.0) -> Any:
        """Wait for a received message whose sender or body matches ``from_or_text``."""

        def found() -> Any:
            for m in self.messages():
                if self._incoming(m) and (matches(from_or_text, m.body)
                                          or matches(from_or_text, self._peer(m))):
                    return m
            return None

        return await apoll_until(found, timeout, f"{self.program} to receive {from_or_text!r}",
                                 interval=0.1, on_timeout=self._diagnostics)

    def stop(self) -> None:
        if self.tmux is not None:
            self.tmux.kill()
            self.tmux = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> TerminalClient:
        return self.start() if self.tmux is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def matches(pattern: str | re.Pattern[str], text: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(text) is not None
    return pattern in text
