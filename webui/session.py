"""Browser sessions held in memory for the life of the daemon.

A session starts when someone opens the URL carrying the per-start access token;
the browser then holds only a random session id in an HttpOnly, SameSite=Strict
cookie. Each session owns its CSRF token, pending flash messages and the identity
the person last looked at. Nothing is written to disk: a restart (new access token)
logs every browser out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_SESSIONS = 64  # a person opens the page from a few browsers, never thousands
MAX_FLASHES = 8


@dataclass(slots=True)
class Session:
    csrf_token: str
    created_at: float
    flashes: list[tuple[str, str]] = field(default_factory=list)
    current_identity: str = ""

    def flash(self, kind: str, text: str) -> None:
        """Queue a message for the next page; kind is "ok" or "error"."""
        self.flashes.append((kind, text))
        del self.flashes[:-MAX_FLASHES]

    def pop_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


def _key(session_id: str) -> str:
    # the dict is keyed by a hash so a lookup does not compare secrets byte by byte
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._max = max_sessions

    def create(self) -> tuple[str, Session]:
        """A new session and the id to put in the cookie; evicts the oldest beyond the cap."""
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf_token=secrets.token_urlsafe(32), created_at=time.time())
        self._sessions[_key(session_id)] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        return self._sessions.get(_key(session_id))

    def __len__(self) -> int:
        return len(self._sessions)


def cookie_name(host: str) -> str:
    """Cookies ignore ports, so two daemons on one machine need different cookie names."""
    port = host.rsplit(":", 1)[1] if ":" in host else "80"
    if not port.isdigit():
        port = "0"
    return f"paranoim_session_{port}"
