"""XEP-0313 history end to end: two real daemons, slixmpp clients, the real archive.

Alice on daemon A writes to Bob on daemon B across the P2P link; Bob answers from one
client while another of his clients watches. What Bob's clients were shown live, what
the watcher got as carbons and what a client that logs in later pages out of the
archive name the same messages by the same XEP-0359 ids. With ``--storage sqlite``
Bob's history is still there after B restarts; with the RAM store it is gone, as the
user guide says. Carol, another identity on B, never sees Bob's history.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.e2e_support import (
    Client,
    Daemon,
    IqError,
    pair_from_template,
    start_pair,
)
from tests.integration.mam_support import mam_query, stanza_id

pytestmark = pytest.mark.slow
_unique = itertools.count(1)


def _run() -> str:
    return f"{time.monotonic_ns():x}-{next(_unique)}"


def _pair(tmp_path_factory: pytest.TempPathFactory, storage: str) -> Iterator[tuple[Daemon,
                                                                                      Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp(f"mam-{storage}"))
    try:
        start_pair(a, b, "--storage", storage)
        yield a, b
    finally:
        b.stop()
        a.stop()


@pytest.fixture
def memory_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    yield from _pair(tmp_path_factory, "memory")


@pytest.fixture
def sqlite_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    yield from _pair(tmp_path_factory, "sqlite")


def client(daemon: Daemon, nick: str, resource: str) -> Client:
    c = Client(daemon.accounts[nick], daemon, resource)
    c.register_plugin("xep_0280")
    return c


async def _converse(a: Daemon, b: Daemon, run: str) -> tuple[list[str], list[str]]:
    """Alice writes three messages, Bob answers two from his laptop with his phone
    watching; the texts in order, and the ids Bob's clients were given for them."""
    alice = await client(a, "Alice", "desk").login()
    laptop = await client(b, "Bob", "laptop").login()
    phone = await client(b, "Bob", "phone").login()
    to_bob, from_alice = b.accounts["Bob"].contact_jid, a.accounts["Alice"].contact_jid
    try:
        await alice.wait(alice.peers, 30, "A linked to B")
        carbons: asyncio.Queue[Any] = asyncio.Queue()
        phone.add_event_handler("carbon_sent", carbons.put_nowait)
        await phone.plugin["xep_0280"].enable()
        texts, ids = [], []
        for n in range(3):
            text = f"alice {run} #{n}"
            alice.chat(to_bob, text)
            got = await laptop.wait_body(from_alice, text, 30)
            on_phone = await phone.wait_body(from_alice, text, 30)
            assert stanza_id(got) and stanza_id(got) == stanza_id(on_phone)
            texts.append(text)
            ids.append(stanza_id(got))
        for n in range(2):
            text = f"bob {run} #{n}"
            laptop.chat(from_alice, text)
            carbon = await asyncio.wait_for(carbons.get(), 30)
            assert carbon["carbon_sent"]["body"] == text
            texts.append(text)
            ids.append(stanza_id(carbon))
        await alice.wait_body(to_bob, texts[-1], 30)
        assert all(ids) and len(set(ids)) == len(ids)
        return texts, ids
    finally:
        await asyncio.gather(alice.close(), laptop.close(), phone.close())


async def _page_all(c: Client, max_: int) -> tuple[list[Any], int]:
    """The whole archive, ``max_`` at a time; and how many pages it took."""
    results: list[Any] = []
    after, pages = None, 0
    while True:
        page, fin = await mam_query(c, rsm={"max": str(max_), **({"after": after}
                                                                   if after else {})})
        results += page
        pages += 1
        assert len(page) <= max_ and pages < 50
        if fin.complete:
            return results, pages
        after = fin.last


async def test_a_later_client_pages_out_what_was_shown_and_sent_with_the_same_ids(
        memory_pair: tuple[Daemon, Daemon]) -> None:
    a, b = memory_pair
    run = _run()
    texts, ids = await _converse(a, b, run)
    later = await client(b, "Bob", "later").login()
    carol = await client(b, "Carol", "nosy").login()
    try:
        results, pages = await _page_all(later, 2)
        mine = [r for r in results if run in r.body]
        assert [r.body for r in mine] == texts and pages == 3
        assert [r.id for r in mine] == [r.stanza_id for r in mine] == ids
        bob_bare, alice_contact = b.accounts["Bob"].jid, a.accounts["Alice"].contact_jid
        assert [(r.sender, r.to) for r in mine] == (
            [(alice_contact, bob_bare)] * 3 + [(bob_bare, alice_contact)] * 2)
        # the last page, asked backwards
        last, fin = await mam_query(later, rsm={"max": "2", "before": ""})
        assert [r.body for r in last] == texts[-2:] and not fin.complete

        nothing, fin = await mam_query(carol)
        assert nothing == [] and fin.count == 0, "Carol's archive holds nothing of Bob's"
        with pytest.raises(IqError) as err:  # Bob's ids mean nothing in Carol's archive
            await mam_query(carol, rsm={"after": ids[0]})
        assert err.value.iq["error"]["condition"] == "item-not-found"
        with pytest.raises(IqError) as err:
            await mam_query(later, {"colour": "blue"}, {"max": "ten"})
        assert err.value.iq["error"]["condition"] == "bad-request"
        assert "unknown field 'colour'" in err.value.iq["error"]["text"]
    finally:
        await asyncio.gather(later.close(), carol.close())

    # the RAM store keeps history only while the daemon runs
    assert b.stop() == 0
    b.start("--peer", a.p2p, "--storage", "memory")
    after = await client(b, "Bob", "after").login()
    try:
        results, fin = await mam_query(after)
        assert [r for r in results if run in r.body] == [] and fin.count == 0
    finally:
        await after.close()


async def test_sqlite_history_survives_a_restart(sqlite_pair: tuple[Daemon, Daemon]) -> None:
    a, b = sqlite_pair
    run = _run()
    texts, ids = await _converse(a, b, run)
    assert b.stop() == 0
    b.start("--peer", a.p2p, "--storage", "sqlite")
    later = await client(b, "Bob", "after-restart").login()
    try:
        results, pages = await _page_all(later, 3)
        mine = [r for r in results if run in r.body]
        assert [r.body for r in mine] == texts and pages == 2
        assert [r.id for r in mine] == ids
        files = list(b.data_dir.glob("archive.db*"))
        assert files, "the archive is kept in archive.db"
        for path in files:
            assert run.encode() not in path.read_bytes(), f"history is sealed in {path.name}"
    finally:
        await later.close()
