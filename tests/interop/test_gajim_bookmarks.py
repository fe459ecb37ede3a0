"""Gajim rejoins the public room from its bookmark after a daemon restart; a bookmark
profanity keeps is the one both clients autojoin.

Gajim 1.7 (Debian's) under Xvfb, logged in to a real ``paranoim run``. The bookmark
is an XEP-0402 item with autojoin, published with the node options nbxmpp uses
(Gajim writes it so when a person joins a room from its dialog; no dialog is
clicked here). What is checked is Gajim's own doing, from its verbose log: it picks
XEP-0402 from what the account advertises, reads the bookmark, joins the room, and
after the daemon is stopped and started again it reconnects and joins again; a
Gajim installed afresh after the restart finds the bookmark on the daemon and joins.
A picture another client of the identity sets through vCard-temp (as Pidgin does)
reaches the running Gajim as an XEP-0084 event, and Gajim fetches and keeps it.

profanity 0.13 keeps bookmarks in XEP-0049 private storage (``/bookmark add``); the
daemon keeps them as XEP-0402 items, so the same bookmark is there for Gajim, and for
profanity itself after the restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.e2e_support import ROOM, Client, Daemon, pair_from_template
from tests.integration.pep_support import (
    BOOKMARK_OPTIONS,
    NATIVE,
    Events,
    avatar_data,
    bookmarks,
    conference,
    png,
    publish,
    vcard_with_photo,
)
from tests.interop.drivers._common import ProgramMissing, free_tcp_port
from tests.interop.drivers.gajim import Gajim
from tests.interop.drivers.profanity import Profanity
from tests.util import skip_or_fail

JOINED = f"Set MUC state: {ROOM} JOINED"


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    _, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("gajim"))
    try:
        yield b.start("--xmpp-port", str(free_tcp_port()))  # the same after the restart
    finally:
        b.stop()


def gajim_for(daemon: Daemon) -> Gajim:
    bob = daemon.accounts["Bob"]
    try:
        return Gajim(bob.jid.split("@")[0], bob.password, daemon.port("xmpp"), daemon.cert)
    except ProgramMissing as exc:
        skip_or_fail(str(exc))


async def test_gajim_rejoins_the_room_from_its_bookmark_after_a_restart(daemon: Daemon) -> None:
    port = daemon.port("xmpp")
    setup = await Client(daemon.accounts["Bob"], daemon, "setup").login()
    try:
        await publish(setup, NATIVE, ROOM, conference(name="Public room", nick="bob-gajim"),
                      BOOKMARK_OPTIONS)
    finally:
        await setup.close()

    gajim = gajim_for(daemon)
    try:
        gajim.start()
        await gajim.wait_count(JOINED, 1)
        text = gajim.text()
        assert "request_items(node=urn:xmpp:bookmarks:1" in text  # XEP-0402, not a fallback
        assert f"Autojoin Bookmark: {ROOM}" in text

        # a picture set as Pidgin sets it (vCard-temp) reaches Gajim as XEP-0084
        picture = png(16, 16)
        sha, _ = avatar_data(picture)
        pidgin = await Client(daemon.accounts["Bob"], daemon, "pidgin").login()
        try:
            iq = pidgin.make_iq_set()
            iq.xml.append(vcard_with_photo(picture))
            await iq.send(timeout=10)  # type: ignore[no-untyped-call]
        finally:
            await pidgin.close()
        await gajim.wait_count(f"Received Avatar: {daemon.accounts['Bob'].jid} {sha}", 1)
        assert (gajim.home / ".cache" / "gajim" / "avatars" / sha).read_bytes() == picture

        assert daemon.stop() == 0
        daemon.start("--xmpp-port", str(port))
        await gajim.wait_count(JOINED, 2, timeout=90)  # reconnected, joined again
    finally:
        gajim.cleanup()

    fresh = gajim_for(daemon)  # a new install: the room can only come from the daemon
    try:
        fresh.start()
        await fresh.wait_count(JOINED, 1)
        assert f"Autojoin Bookmark: {ROOM}" in fresh.text()
    finally:
        fresh.cleanup()


def profanity_for(daemon: Daemon) -> Profanity:
    bob = daemon.accounts["Bob"]
    try:
        return Profanity(bob.jid, bob.password, port=daemon.port("xmpp"))
    except ProgramMissing as exc:
        skip_or_fail(str(exc))


async def test_a_profanity_bookmark_is_autojoined_by_profanity_and_gajim_after_a_restart(
        daemon: Daemon) -> None:
    port = daemon.port("xmpp")
    watch = await Client(daemon.accounts["Bob"], daemon, "watch").login()
    told = Events(watch)
    prof = profanity_for(daemon)
    try:
        prof.start()
        await prof.wait_logged_in()
        line = f"/bookmark add {ROOM} nick bobprof autojoin on"
        prof.pane.send_literal(line)
        await prof.pane.wait_for(line, 10)
        prof.pane.send_keys("Enter")
        await told.wait(NATIVE, "item", ROOM, timeout=20)  # kept as XEP-0402
        assert await bookmarks(watch) == [(ROOM, "true", "bobprof")]
    finally:
        prof.cleanup()
        await watch.close()

    assert daemon.stop() == 0
    daemon.start("--xmpp-port", str(port))
    again = profanity_for(daemon)
    try:
        again.start()
        await again.wait_logged_in()
        await again.pane.wait_for(f"Autojoined {ROOM} as bobprof", 20)
    finally:
        again.cleanup()
    gajim = gajim_for(daemon)
    try:
        gajim.start()
        await gajim.wait_count(JOINED, 1)
        assert f"{ROOM}/bobprof" in gajim.text()  # with the nick profanity kept
    finally:
        gajim.cleanup()
