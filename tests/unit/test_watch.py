"""The watch table: which tags a daemon opens, for whom and why."""

from __future__ import annotations

from bridge.core import crypto, tags
from bridge.core.address import encode_address
from bridge.core.identity import Identity
from bridge.core.watch import Purpose, Watch, Watcher, watch_table


def _watcher(ident: Identity, *contacts: Identity) -> Watcher:
    return Watcher(ident.public, ident.x25519_secret, tuple(c.public for c in contacts))


def test_table_for_two_identities_and_a_contact() -> None:
    alice, bob, carol = (Identity.from_seed(bytes([i]) * 32) for i in (1, 2, 3))
    epochs = tags.watch_epochs(10 * tags.EPOCH + 5)
    table = watch_table([_watcher(alice, bob), _watcher(carol)], ["public"], epochs)
    for e in epochs:
        assert table[tags.address_tag(alice.public, e)] == (Watch(alice.address,
                                                                   Purpose.DIRECT),)
        assert table[tags.address_tag(carol.public, e)] == (Watch(carol.address,
                                                                   Purpose.DIRECT),)
        secret = tags.pair_secret(alice.x25519_secret, alice.public, bob.public)
        assert table[tags.pair_tag(secret, e)] == (
            Watch(alice.address, Purpose.DIRECT, bob.address, pair=True),)
        assert table[tags.pair_tag_to(secret, alice.public, e)] == (
            Watch(alice.address, Purpose.DIRECT, bob.address, pair=True, inbound=True),)
        assert tags.pair_tag_to(secret, bob.public, e) not in table  # what Alice sends
        assert table[tags.announce_tag(bob.public, e)] == (
            Watch(alice.address, Purpose.ANNOUNCE, encode_address(bob.public)),)
        room_pub = crypto.x25519_public(tags.room_secret("public"))
        assert table[tags.room_tag(room_pub, e)] == (Watch("", Purpose.ROOM, "public"),)
        # version 2: the same watches under tags that start with the recipient's shard key
        for tag, who in ((tags.address_tag_v2(alice.public, e), alice.public),
                         (tags.announce_tag_v2(bob.public, e), bob.public),
                         (tags.room_tag_v2(room_pub, e), room_pub),
                         (tags.pair_tag_to(secret, alice.public, e), alice.public)):
            assert tag[:2] == tags.shard_key(who) and tag in table
        assert table[tags.address_tag_v2(alice.public, e)] == (Watch(alice.address,
                                                                      Purpose.DIRECT),)
        assert table[tags.announce_tag_v2(bob.public, e)] == (
            Watch(alice.address, Purpose.ANNOUNCE, encode_address(bob.public)),)
        assert table[tags.room_tag_v2(room_pub, e)] == (Watch("", Purpose.ROOM, "public"),)
    # per epoch: 2 address tags in 2 versions, 2 pair tags (shared, and to Alice), an
    # announcement and a room in 2 versions
    assert len(table) == 10 * len(epochs)


def test_both_ends_of_a_pair_compute_the_same_tag() -> None:
    alice, bob = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x02" * 32)
    epochs = [7]
    a = watch_table([_watcher(alice, bob)], [], epochs)
    b = watch_table([_watcher(bob, alice)], [], epochs)
    shared = set(a) & set(b)
    assert len(shared) == 1 and all(w.pair for w in a[next(iter(shared))])
    # the pair tags to each: Alice watches what Bob sends her, which Bob does not watch
    inbound_a = {t for t, ws in a.items() if any(w.inbound for w in ws)}
    inbound_b = {t for t, ws in b.items() if any(w.inbound for w in ws)}
    assert len(inbound_a) == len(inbound_b) == 1 and not inbound_a & set(b)


def test_no_identity_watches_nothing_not_even_rooms() -> None:
    assert watch_table([], ["public"], [1, 2]) == {}
