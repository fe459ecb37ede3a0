"""A contact's sessions as kept in their key-file record, and what to tell the person
about them (the web UI's contact list, the bot's ``contact`` command)."""

from __future__ import annotations

import base64
import binascii
import logging
import time

from bridge.core.errors import RemoteProtocolError
from bridge.core.sessions import Peer
from bridge.store.keystore import ContactRecord

log = logging.getLogger(__name__)


def decode_peer(c: ContactRecord) -> Peer:
    """Our sessions with the contact (an empty Peer if none, or if unreadable)."""
    if not c.sessions:
        return Peer()
    try:
        return Peer.from_bytes(base64.b64decode(c.sessions, validate=True))
    except (binascii.Error, RemoteProtocolError) as exc:
        log.warning("the sessions kept for a contact are unreadable (%s); starting afresh", exc)
        return Peer()


def _day(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def describe(c: ContactRecord) -> str:
    """One sentence: how messages to this contact are protected now."""
    active = decode_peer(c).active
    if active is not None and active.confirmed:
        return f"End-to-end session (post-quantum, forward secret) since {_day(active.created)}."
    if active is not None:
        return ("Session started; it is confirmed by their first reply. Messages already go "
                "in it.")
    if c.hybrid_prekey:
        return "Their keys are known: your next message starts a post-quantum session."
    return ("Their session keys have not arrived yet (they come with their announcement "
            "once they are online): until then messages are sealed to their weekly prekey, "
            "which is not post-quantum.")
