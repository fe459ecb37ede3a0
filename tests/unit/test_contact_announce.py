"""Announcements to contacts: what counts as news to a contact, and which senders
and tags an announcement sealed to us is taken from (bridge.core.contact_announce)."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.core.address import encode_address
from bridge.core.contact_announce import NotFromContactError, check_sender, digest
from bridge.core.handshake import HybridPrekey, make_hybrid_prekey
from bridge.core.identity import Identity
from bridge.core.records import HybridAnnouncement
from bridge.core.watch import Purpose, Watch

ALICE = Identity.from_seed(bytes(range(32)))
BOB = encode_address(Identity.from_seed(bytes(range(1, 33))).public)
CAROL = encode_address(Identity.from_seed(bytes(range(2, 34))).public)
ME = encode_address(ALICE.public)


def _prekey(n: int, expires: int = 1_800_000_000) -> HybridPrekey:
    return make_hybrid_prekey(ALICE, bytes([n]) * 32, bytes([n]) * 64, expires)


@pytest.fixture(scope="module")
def ann() -> HybridAnnouncement:
    return HybridAnnouncement(1_799_000_000, (_prekey(1), _prekey(2)), "Alice",
                              "http://a.onion:45069")


def test_digest_ignores_the_time_of_issue_and_the_order_of_prekeys(
        ann: HybridAnnouncement) -> None:
    later = dataclasses.replace(ann, issued_at=ann.issued_at + 86400,
                                prekeys=ann.prekeys[::-1])
    assert digest(later) == digest(ann)
    assert len(digest(ann)) == 32 and int(digest(ann), 16) >= 0


def test_digest_changes_with_each_thing_the_announcement_says(ann: HybridAnnouncement) -> None:
    changed = [dataclasses.replace(ann, endpoint=""),
               dataclasses.replace(ann, endpoint="http://b.onion:45069"),
               dataclasses.replace(ann, nick="Alicia"),
               dataclasses.replace(ann, prekeys=ann.prekeys[:1]),
               dataclasses.replace(ann, prekeys=(ann.prekeys[0], _prekey(3)))]
    digests = {digest(a) for a in changed}
    assert len(digests) == len(changed) and digest(ann) not in digests
    # the nick and endpoint fields cannot be shifted into each other
    assert digest(dataclasses.replace(ann, nick="ab", endpoint="c")) != digest(
        dataclasses.replace(ann, nick="a", endpoint="bc"))


def test_taken_from_an_accepted_contact_under_our_address_tag_or_the_pair_tag_to_us() -> None:
    check_sender(Watch(ME, Purpose.DIRECT), BOB, True)
    check_sender(Watch(ME, Purpose.DIRECT, BOB, pair=True, inbound=True), BOB, True)


@pytest.mark.parametrize(("watch", "sender", "accepted", "says"), [
    (Watch(ME, Purpose.DIRECT), CAROL, False, "not an accepted contact"),
    (Watch(ME, Purpose.DIRECT, BOB, pair=True, inbound=True), BOB, False,
     "not an accepted contact"),
    (Watch(ME, Purpose.DIRECT, BOB, pair=True, inbound=True), CAROL, True, "someone else"),
    (Watch(ME, Purpose.DIRECT, BOB, pair=True), BOB, True, "shared pair tag"),
    (Watch(ME, Purpose.ANNOUNCE, BOB), BOB, True, "another kind of tag"),
    (Watch("", Purpose.ROOM, "public"), BOB, True, "another kind of tag"),
])
def test_everything_else_is_dropped(watch: Watch, sender: str, accepted: bool,
                                    says: str) -> None:
    with pytest.raises(NotFromContactError, match=says):
        check_sender(watch, sender, accepted)
