"""A terminal program in a detached tmux session on its own server socket.

Each session gets its own tmux server (``-L <unique name>``, no user config), so tests never
see each other's sessions or the developer's own tmux. The pane stays after the program
exits (remain-on-exit), so a crash leaves its last screen for the failure message.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from ._common import DriverError, apoll_until, find_program, poll_until

_counter = itertools.count()

_CONF = "set -g remain-on-exit on\nset -g history-limit 20000\nset -g status off\n"


class TmuxSession:
    """One program running in a detached tmux pane.

    ``argv`` runs directly (no shell). ``env`` is its whole environment; ``width`` and
    ``height`` set the pane size (wide panes keep long lines from wrapping).
    """

    def __init__(
        self,
        argv: list[str],
        *,
        name: str = "t",
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        width: int = 220,
        height: int = 50,
    ) -> None:
        self.tmux = find_program("tmux", "tmux")
        self.argv = argv
        self.name = name
        self.socket = f"paranoim-{name}-{os.getpid()}-{next(_counter)}"
        self.target = f"{name}:0.0"
        self.env = dict(env if env is not None else os.environ)
        self.env.pop("TMUX", None)
        self.cwd = Path(cwd) if cwd is not None else None
        self.width = width
        self.height = height
        self._conf: Path | None = None
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> TmuxSession:
        fd, conf = tempfile.mkstemp(prefix="paranoim-tmux-", suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(_CONF)
        self._conf = Path(conf)
        args = ["new-session", "-d", "-s", self.name, "-x", str(self.width), "-y", str(self.height)]
        if self.cwd is not None:
            args += ["-c", str(self.cwd)]
        self._tmux(*args, "--", *self.argv)
        self._started = True
        return self

    def kill(self) -> None:
        """Stop the tmux server of this session and the program in it."""
        if self._started:
            self._started = False
            subprocess.run(self._cmd("kill-server"), capture_output=True, env=self.env)
        if self._conf is not None:
            self._conf.unlink(missing_ok=True)
            self._conf = None

    def __enter__(self) -> TmuxSession:
        return self.start() if not self._started else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    # --- talking to the pane -----------------------------------------------------------

    def send_keys(self, *keys: str) -> None:
        """tmux key names or text, e.g. ``send_keys('/quit', 'Enter')``."""
        self._tmux("send-keys", "-t", self.target, *keys)

    def send_literal(self, text: str) -> None:
        """Type ``text`` exactly as given (no key-name lookup)."""
        self._tmux("send-keys", "-t", self.target, "-l", "--", text)

    def capture_pane(self, history: bool = True) -> str:
        """The pane's text, wrapped lines joined; with ``history`` the scrollback too."""
        args = ["capture-pane", "-p", "-J", "-t", self.target]
        if history:
            args += ["-S", "-"]
        return self._tmux(*args)

    def is_alive(self) -> bool:
        """True while the program in the pane has not exited."""
        try:
            return (
                self._tmux("display-message", "-p", "-t", self.target, "#{pane_dead}").strip()
                == "0"
            )
        except DriverError:
            return False

    def exit_status(self) -> int | None:
        """The program's exit status once it has exited, else None.

        tmux 3.3 can mark a pane dead (its pty closed) without ever recording the status,
        so None after ``is_alive()`` turned False means "exited, status unknown".
        """
        try:
            out = self._tmux(
                "display-message", "-p", "-t", self.target, "#{pane_dead} #{pane_dead_status}"
            ).split()
        except DriverError:
            return None
        if len(out) == 2 and out[0] == "1" and out[1].lstrip("-").isdigit():
            return int(out[1])
        return None

    def _match(self, pattern: str | re.Pattern[str]) -> str | None:
        screen = self.capture_pane()
        if isinstance(pattern, re.Pattern):
            m = pattern.search(screen)
            return m.group(0) if m else None
        return pattern if pattern in screen else None

    def describe(self) -> str:
        """The pane's text for a failure message, trailing blanks and empty lines removed."""
        try:
            screen = self.capture_pane()
        except DriverError as exc:
            screen = f"(pane unavailable: {exc})"
        lines = [ln.rstrip() for ln in screen.splitlines()]
        text = "\n".join(ln for ln in lines if ln.strip(" │|"))
        return f"--- tmux pane {self.name} ({' '.join(self.argv)}) ---\n{text[-4000:]}"

    async def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 20.0) -> str:
        """Wait until the pane shows ``pattern`` (substring or compiled regex); the match."""
        return await apoll_until(
            lambda: self._match(pattern),
            timeout,
            f"{pattern!r} in pane {self.name}",
            interval=0.1,
            on_timeout=self.describe,
        )

    def wait_for_blocking(self, pattern: str | re.Pattern[str], timeout: float = 20.0) -> str:
        """wait_for for code that has no event loop running."""
        return poll_until(
            lambda: self._match(pattern),
            timeout,
            f"{pattern!r} in pane {self.name}",
            interval=0.1,
            on_timeout=self.describe,
        )

    # --- plumbing ----------------------------------------------------------------------

    def _cmd(self, *args: str) -> list[str]:
        conf = str(self._conf) if self._conf is not None else "/dev/null"
        return [self.tmux, "-L", self.socket, "-f", conf, *args]

    def _tmux(self, *args: str) -> str:
        proc = subprocess.run(self._cmd(*args), capture_output=True, env=self.env, text=True)
        if proc.returncode != 0:
            raise DriverError(f"tmux {' '.join(args[:2])} failed: {proc.stderr.strip()}")
        return proc.stdout
