"""Messages written to a contact while one is being sealed leave together in one
session envelope (bridge/batching.py, bridge/core/batch.py): the queue on its own
with a sealer the test holds, then through two real services — a burst arrives
once, in order, each message under the id its sender was given, receipts name
them, and a restart part-way through a batch shows only what no client took."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import blake3
import pytest

from bridge.batching import Batches
from bridge.batchparts import BatchParts
from bridge.core.batch import MAX_BATCH_BYTES, MAX_RECORDS, Batch, is_batch, record_id
from bridge.core.records import DirectMessage
from bridge.events import MessageArrived, ReceiptArrived
from bridge.inorder import InOrder
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from bridge.tasks import TaskSet
from tests.integration.test_service import Inbox
from tests.integration.test_sessions_inbox import _announce
from tests.nodes import SharedNode

BITS = 2


class Sealer:
    """Seals whatever it is given when the test lets it; remembers what it sealed."""

    def __init__(self) -> None:
        self.sealed: list[bytes] = []
        self.left: list[bytes] = []  # delivered, in order
        self.ids: list[bytes] = []  # the id each delivered envelope got
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = False

    async def seal(self, key: str, payload: bytes) -> bytes:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("sealing failed")
        self.sealed.append(payload)
        return payload

    async def deliver(self, key: str, raw: bytes) -> bytes:
        self.left.append(raw)
        self.ids.append(blake3.blake3(b"%d" % len(self.left) + raw).digest())
        return self.ids[-1]


def _msg(n: int, size: int = 10) -> bytes:
    return DirectMessage(1000 + n, f"{n:03}" + "x" * size).encode()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def queue() -> AsyncIterator[tuple[Batches[str], Sealer, InOrder[str]]]:
    tasks = TaskSet("test")
    sealer = Sealer()
    yield Batches[str](sealer.seal, sealer.deliver, tasks), sealer, InOrder[str]()
    await tasks.cancel_all()


async def test_what_is_written_while_one_is_sealed_leaves_together(queue) -> None:  # type: ignore[no-untyped-def]
    batches, sealer, order = queue
    sealer.gate.clear()  # the first message is being sealed...
    first = asyncio.create_task(batches.send("bob", _msg(0), 1000, order.turn("bob")))
    await _settle()
    rest = [asyncio.create_task(batches.send("bob", _msg(n), 1000 + n, order.turn("bob")))
            for n in range(1, 6)]  # ...while five more are written
    sealer.gate.set()
    ids = await asyncio.gather(first, *rest)
    assert len(sealer.sealed) == 2 and not is_batch(sealer.sealed[0])
    batch = Batch.parse(sealer.sealed[1])
    assert [r.encode() for r in batch.records] == [_msg(n) for n in range(1, 6)]
    assert ids[0] == sealer.ids[0]  # a lone message: the envelope's own id
    assert ids[1:] == [record_id(sealer.ids[1], n, 5) for n in range(5)]
    assert batches.sent == {"envelopes": 2, "records": 6} and len(order) == 0


async def test_a_message_written_alone_leaves_at_once(queue) -> None:  # type: ignore[no-untyped-def]
    batches, sealer, order = queue
    for n in range(3):
        await batches.send("bob", _msg(n), 1000 + n, order.turn("bob"))
    assert sealer.sealed == [_msg(0), _msg(1), _msg(2)]  # no batch when nothing waits


async def test_anything_written_between_two_messages_ends_the_batch(queue) -> None:  # type: ignore[no-untyped-def]
    batches, sealer, order = queue
    sealer.gate.clear()
    sends = [asyncio.create_task(batches.send("bob", _msg(0), 1000, order.turn("bob")))]
    await _settle()
    sends.append(asyncio.create_task(batches.send("bob", _msg(1), 1001, order.turn("bob"))))
    between = order.turn("bob")  # a chat state or a file chunk, say, written here
    sends.append(asyncio.create_task(batches.send("bob", _msg(2), 1002, order.turn("bob"))))
    sends.append(asyncio.create_task(batches.send("bob", _msg(3), 1003, order.turn("bob"))))
    sealer.gate.set()
    await _settle()
    assert sealer.left == [_msg(0), _msg(1)]  # #2 waits for what was written before it
    await between.wait()
    between.done()
    await asyncio.gather(*sends)
    assert sealer.left[2:] == [Batch.parse(sealer.sealed[2]).encode()]
    assert [r.encode() for r in Batch.parse(sealer.left[2]).records] == [_msg(2), _msg(3)]


async def test_a_batch_is_bounded_and_a_large_message_goes_alone(queue) -> None:  # type: ignore[no-untyped-def]
    batches, sealer, order = queue
    sealer.gate.clear()
    sends = [asyncio.create_task(batches.send("bob", _msg(0), 1000, order.turn("bob")))]
    await _settle()
    sends += [asyncio.create_task(batches.send("bob", _msg(n), 1000 + n, order.turn("bob")))
              for n in range(1, MAX_RECORDS + 3)]
    big = _msg(99, MAX_BATCH_BYTES)
    sends.append(asyncio.create_task(batches.send("bob", big, 2000, order.turn("bob"))))
    sealer.gate.set()
    await asyncio.gather(*sends)
    counts = [len(Batch.parse(p).records) if is_batch(p) else 1 for p in sealer.sealed]
    assert counts == [1, MAX_RECORDS, 2, 1] and sealer.sealed[-1] == big


async def test_a_failed_seal_fails_its_batch_only(queue) -> None:  # type: ignore[no-untyped-def]
    batches, sealer, order = queue
    sealer.gate.clear()
    sends = [asyncio.create_task(batches.send("bob", _msg(0), 1000, order.turn("bob")))]
    await _settle()
    sends += [asyncio.create_task(batches.send("bob", _msg(n), 1000 + n, order.turn("bob")))
              for n in (1, 2)]
    sealer.fail_next = True  # the first seal fails
    sealer.gate.set()
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert all(isinstance(r, bytes) for r in results[1:])  # the next batch still left
    after = await batches.send("bob", _msg(3), 1003, order.turn("bob"))
    assert isinstance(after, bytes) and len(order) == 0


# --- through two services ----------------------------------------------------------------

@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Service, Service, str, str, SharedNode]]:
    pool = WorkerPool(1)
    node = SharedNode(BITS)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS)
    await a.start()
    await b.start()
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    a.add_contact(alice.address, bob.address, "bob")
    b.add_contact(bob.address, alice.address, "alice")
    await _announce(b, node, bob.address)
    await _announce(a, node, alice.address)
    yield a, b, alice.address, bob.address, node
    await a.stop()
    await b.stop()
    pool.close()


async def _arrived(inbox: Inbox, text: str) -> MessageArrived:
    event = await inbox.wait(MessageArrived, text=text)
    assert isinstance(event, MessageArrived)
    return event


def _shown(inbox: Inbox, texts: list[str]) -> list[MessageArrived]:
    return [e for e in inbox.events if isinstance(e, MessageArrived) and e.text in texts]


async def _burst(a: Service, alice: str, bob: str, texts: list[str]) -> list[bytes]:
    """All at once, as the gateway does: one task per stanza, none awaited first."""
    sends = [asyncio.create_task(a.send_message(alice, bob, t, message_id=f"id-{t}"))
             for t in texts]
    return list(await asyncio.wait_for(asyncio.gather(*sends), 30))


async def test_a_burst_arrives_once_in_order_under_the_ids_its_sender_got(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, alice, bob, node = pair
    a_in, b_in = Inbox(a), Inbox(b)
    texts = [f"burst {n:02}" for n in range(20)]
    ids = await _burst(a, alice, bob, texts)
    envelopes = [e for e in node.store.values() if e.version == 2 and e.size > 0]
    last = await _arrived(b_in, texts[-1])
    shown = [*_shown(b_in, texts), last]
    assert [e.text for e in shown] == texts
    assert [e.envelope_id for e in shown] == ids and len(set(ids)) == len(ids)
    assert a.outbox.batches.sent["envelopes"] < len(texts) <= len(envelopes) + len(texts)
    # the recipient's receipts name each message by that id
    await b.send_receipt(bob, alice, ids[3:5], ["id-burst 03", "id-burst 04"])
    receipt = await a_in.wait(ReceiptArrived)
    assert isinstance(receipt, ReceiptArrived) and receipt.acked == tuple(ids[3:5])
    assert b.sessions.held() == 0 and b.health().recent_errors == []


async def test_a_restart_part_way_through_a_batch_shows_only_what_no_client_took(  # type: ignore[no-untyped-def]
        pair, tmp_path: Path) -> None:
    a, b, alice, bob, node = pair
    b_in = Inbox(b, confirm=False)  # Bob's client takes what the test says
    await a.send_message(alice, bob, "first")  # the session, answered
    await _arrived(b_in, "first")
    texts = [f"part {n}" for n in range(6)]
    ids = await _burst(a, alice, bob, texts)
    assert a.outbox.batches.sent["envelopes"] < 1 + len(texts), "some went together"
    got = [await _arrived(b_in, t) for t in texts]
    for e in got[:3]:  # a client took the first three
        b.delivered(e.envelope_id)
    assert b.sessions.held() >= 1 and b.inbox.sizes()["batch_records"] >= 1
    await b.stop()

    again = Service(Keystore(tmp_path / "b"), node, a.outbox.pool, base_bits=BITS)
    again_in = Inbox(again)
    await again.start()  # the node offers every envelope again
    try:
        last = await _arrived(again_in, texts[-1])
        shown = [*_shown(again_in, texts), last]
        assert [e.text for e in shown] == texts[3:]
        assert [e.envelope_id for e in shown] == ids[3:]
        assert again.sessions.held() == 0, "every key went once its records were taken"
        assert again.inbox.sizes()["batch_records"] == 0
    finally:
        await again.stop()
    third = Service(Keystore(tmp_path / "b"), node, a.outbox.pool, base_bits=BITS)
    third_in = Inbox(third)
    await third.start()
    try:
        await a.send_message(alice, bob, "next")
        await third_in.wait(MessageArrived, text="next")
        assert [e for e in third_in.events if isinstance(e, MessageArrived)] == []
        assert third.health().recent_errors == []
    finally:
        await third.stop()


def test_what_waits_for_clients_is_bounded() -> None:
    released: list[bytes] = []
    shown: list[bytes] = []
    parts = BatchParts(released.append, lambda i, _e: shown.append(i), cap=4)
    parts.expect(b"E1", 100, [b"a", b"b", b"c"])
    parts.done(b"a")
    assert released == [] and shown == []
    parts.expect(b"E2", 200, [b"d", b"e"])  # past the cap: E1's oldest record is let go
    assert len(parts) == 4
    parts.done(b"c")
    parts.done(b"d")
    parts.done(b"e")
    assert released == [b"E2"] and shown == [b"E2"]  # E1 waits for its forgotten record
    parts.done(b"lone")  # a message that came alone: its own key
    assert released == [b"E2", b"lone"]
    parts.purge(150)
    assert len(parts) == 0
