"""Announcements to contacts: what decides whether one is sent and whether one is
taken (docs/envelope.md §9, docs/sessions.md §3.3). Pure: records in, answers out.

An identity's public announcement lies in its own shard; a contact whose node
carries another part never receives it. So the daemon also sends the same
version-2 announcement record to each accepted contact, sealed to the contact and
tagged in the contact's shard. ``digest`` is what such a record says, without the
time it was issued: a new one goes to a contact only when the digest differs from
the one last sent to them. ``check_sender`` is the rule on the receiving side.
"""

from __future__ import annotations

from bridge.core import crypto
from bridge.core.errors import UserError
from bridge.core.records import HybridAnnouncement
from bridge.core.watch import Purpose, Watch

_DIGEST_CONTEXT = b"ParanoIM 2026-12 announcement to a contact, digest\x00"


def digest(ann: HybridAnnouncement) -> str:
    """What the announcement says (its prekeys, nick and endpoint; not ``issued_at``),
    as 32 hex digits: two announcements with the same digest tell a contact nothing new."""
    parts = [_DIGEST_CONTEXT, ann.nick.encode("utf-8"), b"\x00",
             ann.endpoint.encode("utf-8"), b"\x00"]
    parts += sorted(p.encode() for p in ann.prekeys)
    return crypto.hash32(b"".join(parts))[:16].hex()


class NotFromContactError(UserError):
    """An announcement sealed to us by someone who is not an accepted contact, or under a
    tag it may not come under: dropped, nothing of it kept."""


def check_sender(w: Watch, sender: str, accepted: bool) -> None:
    """An announcement that opened under the watch ``w`` and was signed by ``sender``
    (an address) is taken only if this passes: it came under our address tag or the
    pair tag to us (never the shared pair tag, under which none is sent), under the pair
    tag from the very contact that tag names, and from an accepted contact."""
    if w.purpose is not Purpose.DIRECT:
        raise NotFromContactError("an announcement to a contact under another kind of tag")
    if w.pair and not w.inbound:
        raise NotFromContactError("an announcement under a shared pair tag was ignored "
                                  "(none is sent there)")
    if w.inbound and sender != w.subject:
        raise NotFromContactError("an announcement under a contact's pair tag came from "
                                  "someone else")
    if not accepted:
        raise NotFromContactError("an announcement from someone who is not an accepted "
                                  "contact was dropped")
