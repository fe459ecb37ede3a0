"""What the service's rooms keep, and for how long: no secret of a deleted
identity, nothing remembered past its envelope's expiry, no key-file write on
the event loop for what envelopes teach, and never this node as its own peer."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest

from bridge.core.errors import UserError
from bridge.core.identity import Identity
from bridge.core.invite import Invite, encode_invite
from bridge.events import MessageArrived
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from bridge.store.seen import ExpiringIds
from tests.integration.test_service import Inbox
from tests.nodes import SharedNode

BITS = 6


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    yield p
    p.close()


def _live_identities(address: str) -> list[Identity]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Identity) and o.address == address]


async def test_a_deleted_identity_leaves_no_secret_behind(tmp_path: Path,
                                                          pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    await a.start()
    await b.start()
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    b.add_contact(bob.address, alice.address)
    b_in = Inbox(b)
    await a.send_message(alice.address, bob.address, "before I go")  # keys in use
    await b_in.wait(MessageArrived)
    assert _live_identities(alice.address)  # the service holds its keys while it lives
    await a.stop()  # announcements done
    a.delete_identity(alice.address)
    assert _live_identities(alice.address) == []
    await b.stop()


async def test_what_the_inbox_remembers_ends_with_the_envelopes(tmp_path: Path,
                                                                pool: WorkerPool) -> None:
    now = [int(time.time())]
    node = SharedNode(BITS, lambda: now[0])
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS, clock=lambda: now[0],
                ttl=3600)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS, clock=lambda: now[0])
    await a.start()
    await b.start()
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    b.add_contact(bob.address, alice.address)
    b_in = Inbox(b, confirm=False)  # a face that never confirms: a client stays offline
    for i in range(5):
        await a.send_message(alice.address, bob.address, f"m{i}")
        await b_in.wait(MessageArrived)
    sizes = b.inbox.sizes()
    assert sizes["unconfirmed"] == 5 and sizes["opened"] >= 5
    now[0] += 3601  # every message has expired
    await b.maintain()
    sizes = b.inbox.sizes()
    assert sizes["unconfirmed"] == 0 and sizes["opened"] == 0
    await a.stop()
    await b.stop()


def test_remembered_ids_are_capped_oldest_first() -> None:
    ids = ExpiringIds(cap=3)
    for i in range(5):
        ids.put(bytes([i]), 100 + i)
    assert list(ids) == [b"\x02", b"\x03", b"\x04"]
    ids.purge(103)
    assert list(ids) == [b"\x04"]


async def test_what_an_envelope_teaches_is_saved_off_the_event_loop(tmp_path: Path,
                                                                   pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    await a.start()
    await b.start()
    alice = await a.create_identity("Alice")
    bob = await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address)
    a.start_delivery()
    await a.stop()  # a stops listening: Bob's announcement waits in the node
    before = a.keystore.path.read_bytes()
    b.outbox.endpoint = "http://192.0.2.7:45069"
    await b.outbox.announce(b.ids.rec(bob.address))
    for env in node.iter_stored():
        a.inbox.on_envelope(env)  # learns Bob's endpoint
    c = a.book.find(a.ids.rec(alice.address), bob.address)
    assert c is not None and c.endpoint == "http://192.0.2.7:45069"
    assert a.keystore.path.read_bytes() == before  # not written on the loop
    await a.ids.flush()
    assert b"192.0.2.7:45069" in a.keystore.path.read_bytes()
    await b.stop()


async def test_this_node_is_never_its_own_peer(tmp_path: Path, pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    node.own_addresses = {"127.0.0.1:45069"}
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS)
    await a.start()
    alice = await a.create_identity("Alice")
    bob = Identity.from_seed(b"\x07" * 32)
    # Bob's invitation names this node (his own knew it as a peer) and another one
    link = encode_invite(Invite(bob.public, "Bob", ("127.0.0.1:45069", "192.0.2.9:45069")))
    a.add_contact(alice.address, link)
    assert [p["address"] for p in a.health().peers] == ["192.0.2.9:45069"]
    with pytest.raises(UserError, match="this node itself"):
        a.add_peer("127.0.0.1:45069")
    assert [p["address"] for p in a.health().peers] == ["192.0.2.9:45069"]
    assert a.health().recent_errors == []  # its own address in a link is no error
    await asyncio.sleep(0)
    await a.stop()


async def test_client_storage_is_kept_with_the_keys_encrypted(tmp_path: Path,
                                                             pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    keys = Keystore(tmp_path / "a", "a long passphrase", kdf_ops=1, kdf_mem=8192)
    a = Service(keys, node, pool, base_bits=BITS)
    await a.start()
    alice = await a.create_identity("Alice")
    a.set_client_storage(alice.address, {"{storage:bookmarks}storage":
                                         "<storage xmlns='storage:bookmarks'/>"})
    await a.stop()  # written by then
    assert b"storage:bookmarks" not in keys.path.read_bytes()
    again = Service(Keystore(tmp_path / "a", "a long passphrase"), node, pool, base_bits=BITS)
    await again.start()
    assert again.client_storage(alice.address) == {
        "{storage:bookmarks}storage": "<storage xmlns='storage:bookmarks'/>"}
    await again.stop()


def test_a_key_file_too_large_to_load_is_never_written(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.store import keystore as ks
    from bridge.store.keystore import IdentityRecord, KeystoreError

    monkeypatch.setattr(ks, "MAX_KEYFILE", 4096)  # the bound, small enough to reach here
    keys = Keystore(tmp_path)
    with pytest.raises(KeystoreError, match="not saved"):
        for i in range(100):
            keys.doc.identities.append(IdentityRecord(seed=f"{i:064x}", nick=f"n{i}",
                                                      username=f"u{i}", xmpp_password="p",
                                                      created_at=0))
            keys.save()
    saved = len(Keystore(tmp_path).load().identities)  # what is on disk still loads
    assert 0 < saved < len(keys.doc.identities)


async def test_contact_changes_update_the_watch_table_as_a_rebuild_would(
        tmp_path: Path, pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    s = Service(Keystore(tmp_path), node, pool, base_bits=BITS)
    await s.start()
    alice = await s.create_identity("Alice")
    bob = await s.create_identity("Bob")  # two local identities share pair tags
    others = [Identity.from_seed(bytes([i]) * 32).address for i in range(1, 6)]
    s.add_contact(alice.address, bob.address)
    s.add_contact(bob.address, alice.address)
    for a in others:
        s.add_contact(alice.address, a)
    s.block_contact(alice.address, others[0])
    s.remove_contact(alice.address, others[1])
    s.block_contact(bob.address, others[2])  # never a contact: blocked only
    s.remove_contact(bob.address, alice.address)
    s.accept_contact(alice.address, others[0])  # unblocked
    incremental = s.inbox.watched()
    s.inbox.rewatch()
    assert incremental == s.inbox.watched()
    assert len(incremental) > 20
    await s.stop()


async def test_strangers_leave_nothing_in_what_the_inbox_remembers_per_sender(
        tmp_path: Path, pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    await a.start()
    await b.start()
    bob = await b.create_identity("Bob")
    strangers = [await a.create_identity(f"S{i}") for i in range(5)]
    for s in strangers:
        await a.send_message(s.address, bob.address, "hello")
    assert b.held_messages(bob.address, strangers[0].address) == 1
    assert b.inbox.sizes()["senders_heard"] == 0  # nothing per stranger outside the queue
    b_in = Inbox(b)
    b.accept_contact(bob.address, strangers[0].address)
    await b_in.wait(MessageArrived)
    assert b.inbox.sizes()["senders_heard"] == 1
    b.remove_contact(bob.address, strangers[0].address)
    assert b.inbox.sizes()["senders_heard"] == 0
    await a.stop()
    await b.stop()
