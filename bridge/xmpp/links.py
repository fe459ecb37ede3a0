"""Which user of an XMPP server is which local identity (component mode).

As an XEP-0114 component, the gateway serves users of someone else's server:
``alice@example.org`` registers with ``p2p.example.org`` (XEP-0077) and is
linked to one local identity. The links live in ``xmpp-links.json`` in the
data directory (0600, written atomically), so they survive restarts; they hold
JIDs and addresses only, never keys. One identity has at most one user and a
user one identity: the roster of an identity is that user's roster.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from bridge.core.errors import UserError

FILE_NAME = "xmpp-links.json"
VERSION = 1


class LinkConflictError(UserError):
    """The identity is already linked to another XMPP account."""


class Links:
    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._by_jid: dict[str, str] = {}
        self._by_address: dict[str, str] = {}
        self.load()

    def load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            doc = {"version": VERSION, "links": []}
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path} cannot be read ({exc}); fix or remove it") from exc
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise UserError(f"{self.path} is not a links file of this version; remove it")
        self._by_jid.clear()
        self._by_address.clear()
        for entry in doc.get("links", []):
            jid, address = str(entry["jid"]), str(entry["address"])
            self._by_jid[jid] = address
            self._by_address[address] = jid

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": VERSION,
               "links": [{"jid": j, "address": a} for j, a in sorted(self._by_jid.items())]}
        fd, tmp = tempfile.mkstemp(prefix=".links-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # --- lookups -----------------------------------------------------------------------

    def address_for(self, jid: str) -> str | None:
        return self._by_jid.get(jid.lower())

    def jid_for(self, address: str) -> str | None:
        return self._by_address.get(address)

    def all(self) -> list[tuple[str, str]]:
        """(user bare JID, identity address) pairs."""
        return sorted(self._by_jid.items())

    # --- changes -----------------------------------------------------------------------

    def link(self, jid: str, address: str) -> None:
        jid = jid.lower()
        other = self._by_address.get(address)
        if other is not None and other != jid:
            raise LinkConflictError(
                "that identity is already linked to another XMPP account; "
                "unregister it there first")
        old = self._by_jid.get(jid)
        if old is not None and old != address:
            del self._by_address[old]
        self._by_jid[jid] = address
        self._by_address[address] = jid
        self._save()

    def unlink(self, jid: str) -> str | None:
        """Forget ``jid``'s link; returns the address it had."""
        address = self._by_jid.pop(jid.lower(), None)
        if address is not None:
            self._by_address.pop(address, None)
            self._save()
        return address
