"""Bookmarks and the avatar on a real daemon, across a restart (``paranoim run``).

The issue's check: a client that kept the public room as an XEP-0402 bookmark with
autojoin finds it after the daemon restarts, and rejoins it. The client here does
at login what Gajim 1.7 does (``gajim/common/modules/bookmarks.py``): disco#info on
its own account, XEP-0402 when the server offers publish-options, ``#compat-pep``
and ``config-node-max``, then join every bookmark with autojoin. The key file is
where the bookmarks live: the record of the identity that made them, and no other.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from bridge.store.keystore import MAGIC_PLAIN
from tests.integration.e2e_support import MUC_NS, ROOM, Client, Daemon, pair_from_template
from tests.integration.pep_support import (
    BOOKMARK_OPTIONS,
    NATIVE,
    Events,
    avatar_data,
    bookmarks,
    conference,
    items,
    png,
    private_bookmarks,
    publish,
    publish_iq,
    vcard_photo,
)

pytestmark = pytest.mark.slow
PUBSUB = "http://jabber.org/protocol/pubsub"


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Daemon B of the shared template (Bob, Carol, Mallory), alone."""
    _, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("pep"))
    try:
        yield b.start()
    finally:
        b.stop()


async def login(daemon: Daemon, nick: str, resource: str = "e2e") -> Client:
    return await Client(daemon.accounts[nick], daemon, resource).login()


async def join(client: Client, room: str, nick: str) -> None:
    presence = client.make_presence(pto=slixmpp.JID(f"{room}/{nick}"))
    presence.xml.append(ET.Element(f"{{{MUC_NS}}}x"))
    presence.send()
    await client.wait(lambda: any(p["from"] == f"{room}/{nick}"
                                  and 110 in p["muc"]["status_codes"]
                                  for p in client.presences), 10, f"in {room} as {nick}")


async def gajim_autojoin(client: Client) -> list[str]:
    """What Gajim does at login with its bookmarks; the rooms it joined."""
    info = await client.plugin["xep_0030"].get_info(jid=slixmpp.JID(client.boundjid.bare),
                                                       timeout=10)
    features = set(info["disco_info"]["features"])
    native = {f"{PUBSUB}#publish-options", f"{NATIVE}#compat-pep",
              f"{PUBSUB}#config-node-max"} <= features
    assert native, "Gajim would fall back to private storage"
    joined = []
    for jid, autojoin, nick in await bookmarks(client):
        if autojoin == "true":
            await join(client, jid, nick or client.account.nick)
            joined.append(jid)
    return joined


def pep_of(daemon: Daemon) -> dict[str, dict[str, str]]:
    """Username -> PEP nodes, read from the daemon's (plain) key file."""
    raw = (daemon.data_dir / "keys.pim").read_bytes()
    assert raw.startswith(MAGIC_PLAIN)
    doc = json.loads(raw[len(MAGIC_PLAIN):])
    return {i["username"]: i.get("pep", {}) for i in doc["identities"]}


async def test_gajim_style_autojoin_finds_the_room_again_after_a_restart(
        daemon: Daemon) -> None:
    bob = await login(daemon, "Bob", "laptop")
    phone = await login(daemon, "Bob", "phone")
    told = Events(phone)
    try:
        await publish(bob, NATIVE, ROOM, conference(name="Public room", nick="bobby"),
                      BOOKMARK_OPTIONS)
        await told.wait(NATIVE, "item", ROOM)  # the other client is told at once
        picture = png(8, 8)
        sha, data = avatar_data(picture)
        await publish(bob, "urn:xmpp:avatar:data", sha, data)
        meta = ET.Element("{urn:xmpp:avatar:metadata}metadata")
        ET.SubElement(meta, "{urn:xmpp:avatar:metadata}info",
                      {"id": sha, "bytes": str(len(picture)), "type": "image/png"})
        await publish(bob, "urn:xmpp:avatar:metadata", sha, meta)
    finally:
        await bob.close()
        await phone.close()

    assert daemon.stop() == 0
    kept = pep_of(daemon)
    bob_name = daemon.accounts["Bob"].jid.split("@")[0]
    carol_name = daemon.accounts["Carol"].jid.split("@")[0]
    assert ROOM in kept[bob_name][NATIVE] and kept[carol_name] == {}
    daemon.start()

    bob = await login(daemon, "Bob", "laptop")
    carol = await login(daemon, "Carol")
    try:
        assert await gajim_autojoin(bob) == [ROOM]
        assert await private_bookmarks(bob) == [(ROOM, "true")]  # profanity's view
        assert await vcard_photo(bob) == picture  # Pidgin's view of the XEP-0084 avatar
        # Carol, on the same daemon, has none of it and cannot ask for Bob's
        assert await private_bookmarks(carol) == []
        assert await vcard_photo(carol) is None
        with pytest.raises(IqError) as err:
            await items(carol, NATIVE, to=bob.boundjid.bare)
        assert err.value.condition == "service-unavailable"
    finally:
        await bob.close()
        await carol.close()


async def test_hostile_pep_input_gets_errors_and_the_daemon_carries_on(daemon: Daemon) -> None:
    bob = await login(daemon, "Bob")
    try:
        with pytest.raises(IqError) as err:
            await publish(bob, "n" * 5000, "i", ET.Element("{urn:example}p"))
        assert err.value.condition == "not-acceptable"
        sha, junk = avatar_data(b"MZ\x90\x00 an executable, not a picture")
        with pytest.raises(IqError) as err:
            await publish(bob, "urn:xmpp:avatar:data", sha, junk)
        assert err.value.condition == "not-acceptable"
        assert "PNG or a JPEG" in err.value.text
        blob = ET.Element("{urn:example}blob")
        blob.text = "z" * (10 * 1024 * 1024)
        publish_iq(bob, "urn:example:big", "i", blob).send()
        await bob.wait(lambda: bob.transport is None, 30, "the stream closed on 10 MB")
    finally:
        await bob.close()
    again = await login(daemon, "Bob")
    try:
        with pytest.raises(IqError) as err:
            await items(again, "urn:example:big")
        assert err.value.condition == "item-not-found"
    finally:
        await again.close()
    assert "Traceback" not in daemon.log_text()
