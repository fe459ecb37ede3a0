"""Things to show once the key file holds what caused them (docs/sessions.md §11):
a message opened in a session is shown only after the session state it moved is on
disk, so a crash never shows it twice. Shown in the order they came; a burst of
arrivals waits for one write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bridge.core.errors import RemoteProtocolError, UserError
from bridge.events import RecentErrors


class AfterSave:
    def __init__(self, durable: Callable[[], Awaitable[None]], errors: RecentErrors,
                 spawn: Callable[[Coroutine[Any, Any, None]], object] | None) -> None:
        self.durable, self.errors, self.spawn = durable, errors, spawn
        self._waiting: list[Callable[[], None]] = []
        self._draining = False

    def __call__(self, show: Callable[[], None]) -> None:
        """Run ``show`` once everything recorded so far is written."""
        self._waiting.append(show)
        if self.spawn is None:  # no event loop to wait on (tests of the pure paths)
            self._run()
            return
        if not self._draining:
            self._draining = True
            self.spawn(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting:
                try:
                    await self.durable()
                except (UserError, OSError) as exc:
                    # Shown all the same: holding them back would lose them for good if
                    # the write never succeeds; a restart may show them a second time.
                    self.errors.add(f"the key file could not be saved ({exc}); messages "
                                    "shown now may be shown again after a restart")
                self._run()
        finally:
            self._draining = False

    def _run(self) -> None:
        ready, self._waiting = self._waiting, []
        for show in ready:
            try:
                show()
            except (RemoteProtocolError, UserError) as exc:
                self.errors.add(f"a message in a session was not shown: {exc}")
