"""Messages to one contact are pipelined in the outbox — sealed and stamped while the
ones before are still being solved or delivered — and still leave in the order they
were written: ``InOrder`` on its own, then a burst through the real service with the
proof of work solved in the worker processes, where solves finish in any order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.events import MessageArrived
from bridge.inorder import InOrder
from bridge.net.workers import INLINE_BITS, WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.integration.test_service import Inbox
from tests.nodes import SharedNode

BITS = INLINE_BITS + 2  # above what the crypto thread solves: the worker processes do it
TTL = 600  # ten minutes: the base difficulty, no surcharge for size × lifetime
BURST = 40


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    # Small tasks: each proof takes many, the jobs of a burst interleave in the workers,
    # and they end in any order (as proofs of 20 and more bits do with the default).
    p.pow_range = 1 << 8
    yield p
    p.close()


async def _settle() -> None:
    """Let every ready task run until it waits (no I/O here: a few loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def _leave_in_order(order: InOrder[str], key: str, n: int, ready: asyncio.Event,
                          left: list[int], fail: bool = False) -> None:
    turn = order.turn(key)
    try:
        await ready.wait()  # the work: finishes whenever the test says
        if fail:
            raise RuntimeError("this one fails before its turn")
        await turn.wait()
        left.append(n)
    finally:
        turn.done()


async def test_turns_leave_in_the_order_taken_whatever_order_the_work_ends() -> None:
    order = InOrder[str]()
    left: list[int] = []
    ready = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(_leave_in_order(order, "bob", n, ready[n], left,
                                                 fail=n == 2)) for n in range(5)]
    other_left: list[int] = []
    other_ready = asyncio.Event()
    other = asyncio.create_task(_leave_in_order(order, "carol", 0, other_ready, other_left))
    await _settle()  # every task has taken its turn
    other_ready.set()
    await other  # another contact waits for nobody's queue but its own
    assert other_left == [0] and left == []
    for n in (4, 3, 1, 2):  # the work ends back to front; #0 is still working
        ready[n].set()
    await _settle()
    assert left == []  # nothing leaves before #0
    ready[0].set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert left == [0, 1, 3, 4]  # the failed #2 let the others go, in order
    assert isinstance(results[2], RuntimeError)
    assert len(order) == 0  # nothing remembered once the queue is empty


async def test_a_cancelled_message_keeps_the_ones_after_it_behind_the_ones_before() -> None:
    order = InOrder[str]()
    left: list[int] = []
    ready = [asyncio.Event() for _ in range(3)]
    tasks = [asyncio.create_task(_leave_in_order(order, "bob", n, ready[n], left))
             for n in range(3)]
    ready[1].set()
    ready[2].set()
    await _settle()
    tasks[1].cancel()  # waiting for #0's turn when it is cancelled
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    await _settle()
    assert left == []  # #2 still waits for #0
    ready[0].set()
    await asyncio.gather(tasks[0], tasks[2])
    assert left == [0, 2]


async def test_a_burst_to_one_contact_is_pipelined_and_arrives_in_order(
    tmp_path: Path, pool: WorkerPool
) -> None:
    node = SharedNode(BITS)
    alice_s = Service(Keystore(tmp_path / "a"), node, pool, base_bits=BITS, ttl=TTL)
    bob_s = Service(Keystore(tmp_path / "b"), node, pool, base_bits=BITS, ttl=TTL)
    await alice_s.start()
    await bob_s.start()
    try:
        alice = await alice_s.create_identity("Alice")
        bob = await bob_s.create_identity("Bob")
        alice_s.add_contact(alice.address, bob_s.invite_link(bob.address))
        bob_s.add_contact(bob.address, alice.address, "alice")
        inbox = Inbox(bob_s)
        texts = [f"burst #{n:02}" for n in range(BURST)]
        # All at once, as the gateway does: one task per stanza, none awaited first.
        sends = [asyncio.create_task(alice_s.send_message(alice.address, bob.address, t))
                 for t in texts]
        ids = await asyncio.wait_for(asyncio.gather(*sends), 60)
        sent = set(ids)
        assert [i for i in node.store if i in sent] == ids  # published in the order written

        last = await inbox.wait(MessageArrived, 30, text=texts[-1])
        got = [e.text for e in inbox.events if isinstance(e, MessageArrived)]
        assert [*got, last.text] == texts  # shown in the order written
        assert len(alice_s.outbox.in_order) == 0
    finally:
        await bob_s.stop()
        await alice_s.stop()
