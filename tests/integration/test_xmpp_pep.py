"""PEP (XEP-0163) on the embedded listener: bookmarks in their three forms, the
identity's avatar, what clients are told, and what is refused.

The listener is the real one over loopback with STARTTLS; the service is the
contract-tested fake (``tests/fakes.py``). The real daemon, with a restart, is in
``test_e2e_xmpp_pep.py``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient
from tests.integration.pep_support import (
    AVATAR_DATA,
    AVATAR_META,
    BOOKMARK_OPTIONS,
    LEGACY,
    NATIVE,
    OWNER,
    PRIVATE,
    PUBSUB,
    Events,
    avatar_data,
    bookmarks,
    conference,
    form,
    items,
    png,
    private_bookmarks,
    publish,
    publish_iq,
    retract,
    vcard_photo,
    vcard_with_photo,
)

ROOM = "public@rooms.localhost"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    service = FakeService()
    service.add_user("alice", "alice-pw")
    service.add_user("bob", "bob-pw")
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await srv.start()
    yield srv
    await srv.close()


async def login(server: C2SServer, user: str, resource: str = "t") -> SlixClient:
    client = await SlixClient(f"{user}@localhost/{resource}", f"{user}-pw", server.cert_path
                              ).connect(server.port)
    assert client.started.is_set()
    return client


async def refused(condition: str, request: object) -> str:
    with pytest.raises(IqError) as err:
        await request  # type: ignore[misc]
    assert err.value.condition == condition, err.value.text
    return str(err.value.text)


async def test_the_account_advertises_pep_and_the_bookmark_forms(server: C2SServer) -> None:
    alice = await login(server, "alice")
    try:
        info = await alice.xmpp.plugin["xep_0030"].get_info(jid=JID("alice@localhost"), timeout=5)
        features = set(info["disco_info"]["features"])
        # what Gajim 1.7 needs to keep bookmarks as XEP-0402 (bookmarks.py _bookmark_module)
        assert {"http://jabber.org/protocol/pubsub#publish",
                "http://jabber.org/protocol/pubsub#publish-options",
                "http://jabber.org/protocol/pubsub#config-node-max",
                f"{NATIVE}#compat", f"{NATIVE}#compat-pep", "urn:xmpp:bookmarks-conversion:0",
                "urn:xmpp:pep-vcard-conversion:0"} <= features
        assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
    finally:
        await alice.close()


async def test_a_bookmark_is_kept_told_to_the_other_clients_and_seen_in_every_form(
        server: C2SServer) -> None:
    one = await login(server, "alice", "one")
    two = await login(server, "alice", "two")
    bob = await login(server, "bob")
    two_events = Events(two.xmpp)
    try:
        await refused("item-not-found", items(one.xmpp, NATIVE))  # nothing kept yet
        reply = await publish(one.xmpp, NATIVE, ROOM, conference(nick="al", name="Public"),
                              BOOKMARK_OPTIONS)
        assert reply.xml.find(f".//{{{PUBSUB}}}item").get("id") == ROOM
        await two_events.wait(NATIVE, "item", ROOM)
        await two_events.wait(LEGACY, "item", "current")  # the XEP-0048 form too
        assert await bookmarks(two.xmpp) == [(ROOM, "true", "al")]
        assert await private_bookmarks(two.xmpp) == [(ROOM, "true")]  # XEP-0049 form
        legacy = await items(two.xmpp, LEGACY)  # XEP-0048 over PEP
        assert [c.get("jid") for c in legacy[0][1]] == [ROOM]

        # one identity never sees another's
        await refused("item-not-found", items(bob.xmpp, NATIVE))
        assert await private_bookmarks(bob.xmpp) == []
        await refused("service-unavailable", items(bob.xmpp, NATIVE, to="alice@localhost"))

        await retract(one.xmpp, NATIVE, ROOM)
        await two_events.wait(NATIVE, "retract", ROOM)
        assert await bookmarks(two.xmpp) == []
        assert await private_bookmarks(one.xmpp) == []
    finally:
        for c in (one, two, bob):
            await c.close()


async def test_private_storage_bookmarks_become_the_native_ones(server: C2SServer) -> None:
    """profanity keeps its bookmarks in XEP-0049; Gajim on the same account sees them."""
    one = await login(server, "alice", "one")
    two = await login(server, "alice", "two")
    one_events, two_events = Events(one.xmpp), Events(two.xmpp)
    try:
        storage = ET.Element(f"{{{LEGACY}}}storage")
        c = ET.SubElement(storage, f"{{{LEGACY}}}conference", {"jid": ROOM, "autojoin": "1"})
        ET.SubElement(c, f"{{{LEGACY}}}nick").text = "prof"
        iq = one.xmpp.make_iq_set()
        ET.SubElement(iq.xml, f"{{{PRIVATE}}}query").append(storage)
        await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        await two_events.wait(NATIVE, "item", ROOM)
        assert await bookmarks(two.xmpp) == [(ROOM, "true", "prof")]
        # and the XEP-0048 PEP form written by an older Gajim replaces the list
        await publish(two.xmpp, LEGACY, "current", ET.Element(f"{{{LEGACY}}}storage"))
        await one_events.wait(NATIVE, "retract", ROOM)
        assert await bookmarks(one.xmpp) == []
    finally:
        await one.close()
        await two.close()


async def test_node_configuration_as_nbxmpp_reconfigures_it(server: C2SServer) -> None:
    alice = await login(server, "alice")
    try:
        await publish(alice.xmpp, "urn:example:notes", "n1", ET.Element("{urn:example}n"))
        disco = alice.xmpp.plugin["xep_0030"]
        own = JID("alice@localhost")
        listed = await disco.get_items(jid=own, timeout=5)
        assert [n for _, n, _ in listed["disco_items"]["items"]] == ["urn:example:notes"]
        info = await disco.get_info(jid=own, node="urn:example:notes", timeout=5)
        assert ("pubsub", "leaf", None, None) in info["disco_info"]["identities"]
        with pytest.raises(IqError) as err:
            await disco.get_info(jid=own, node="urn:example:none", timeout=5)
        assert err.value.condition == "item-not-found"
        iq = alice.xmpp.make_iq_get()
        ET.SubElement(ET.SubElement(iq.xml, f"{{{OWNER}}}pubsub"), f"{{{OWNER}}}configure",
                      {"node": "urn:example:notes"})
        reply = await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in reply.xml.iter("{jabber:x:data}field")}
        assert fields["pubsub#max_items"] == "1" and fields["pubsub#persist_items"] == "true"
        iq = alice.xmpp.make_iq_set()
        ET.SubElement(ET.SubElement(iq.xml, f"{{{OWNER}}}pubsub"), f"{{{OWNER}}}configure",
                      {"node": "urn:example:notes"}).append(
            form({"pubsub#max_items": "max", "pubsub#access_model": "whitelist"}))
        await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        await publish(alice.xmpp, "urn:example:notes", "n2", ET.Element("{urn:example}n"))
        assert [i for i, _ in await items(alice.xmpp, "urn:example:notes")] == ["n1", "n2"]
        iq = alice.xmpp.make_iq_set()
        ET.SubElement(ET.SubElement(iq.xml, f"{{{OWNER}}}pubsub"), f"{{{OWNER}}}delete",
                      {"node": "urn:example:notes"})
        await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        await refused("item-not-found", items(alice.xmpp, "urn:example:notes"))
    finally:
        await alice.close()


async def test_the_avatar_through_pep_and_vcard(server: C2SServer) -> None:
    one = await login(server, "alice", "one")
    two = await login(server, "alice", "two")
    bob = await login(server, "bob")
    two_events = Events(two.xmpp)
    try:
        assert await vcard_photo(one.xmpp) is None
        picture = png(4, 4)
        iq = one.xmpp.make_iq_set()
        iq.xml.append(vcard_with_photo(picture))  # as Pidgin sets its buddy icon
        await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        sha, _ = avatar_data(picture)
        await two_events.wait(AVATAR_META, "item", sha)
        assert await vcard_photo(two.xmpp) == picture
        meta = await items(two.xmpp, AVATAR_META)
        info = meta[0][1][0]
        assert (info.get("id"), info.get("bytes"), info.get("type")) == (
            sha, str(len(picture)), "image/png")
        assert await vcard_photo(bob.xmpp) is None  # Bob's own, not Alice's

        # XEP-0084 (Gajim, Dino): data, then metadata; the vCard shows it
        other = png(2, 2, pad=100 * 1024)  # the size of Gajim's 200x200 PNG of a photo
        sha2, data = avatar_data(other)
        await publish(two.xmpp, AVATAR_DATA, sha2, data)
        meta_el = ET.Element(f"{{{AVATAR_META}}}metadata")
        ET.SubElement(meta_el, f"{{{AVATAR_META}}}info",
                      {"id": sha2, "bytes": str(len(other)), "type": "image/png"})
        await publish(two.xmpp, AVATAR_META, sha2, meta_el)
        assert await vcard_photo(one.xmpp) == other
        iq = one.xmpp.make_iq_set()
        iq.xml.append(vcard_with_photo(None))  # a vCard without a photo: none
        await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        assert await vcard_photo(two.xmpp) is None
    finally:
        for c in (one, two, bob):
            await c.close()


async def test_hostile_publishes_are_refused_with_xmpp_errors(server: C2SServer) -> None:
    alice = await login(server, "alice")
    x = alice.xmpp
    try:
        text = await refused("not-acceptable", publish(x, "n" * 5000, "i", ET.Element("{u}p")))
        assert "256 bytes" in text
        await refused("not-acceptable", publish(x, "n", "i" * 300, ET.Element("{u}p")))
        big = ET.Element("{urn:example}big")
        big.text = "x" * 60_000
        await refused("not-acceptable", publish(x, "n", "i", big))
        # avatars: not an image, too big, id not its hash, a vCard photo that is text
        sha, junk = avatar_data(b"GIF89a not what we take")
        await refused("not-acceptable", publish(x, AVATAR_DATA, sha, junk))
        sha, huge = avatar_data(png(pad=129 * 1024))
        await refused("not-acceptable", publish(x, AVATAR_DATA, sha, huge))
        _, good = avatar_data(png())
        await refused("bad-request", publish(x, AVATAR_DATA, "0" * 40, good))
        iq = x.make_iq_set()
        iq.xml.append(vcard_with_photo(b"<svg onload='x'/>", "image/svg+xml"))
        await refused("not-acceptable", iq.send(timeout=5))  # type: ignore[no-untyped-call]
        # bookmarks that are not bookmarks
        await refused("bad-request", publish(x, NATIVE, "not a jid", conference()))
        await refused("bad-request", publish(x, NATIVE, ROOM, ET.Element("{u}p")))
        await refused("not-acceptable", publish(x, "n", "i", ET.Element("{u}p"),
                                                {"pubsub#max_items": "-3"}))

        # 10,000 bookmarks, sent as fast as a client can: the node keeps 256 and
        # refuses the rest, each with an error that says so
        results: list[object] = []
        for batch in range(0, 10_000, 250):  # 250 in flight (slixmpp matches replies in O(n))
            results += await asyncio.gather(*[
                publish_iq(x, NATIVE, f"room{n}@rooms.localhost", conference(),
                           BOOKMARK_OPTIONS).send(timeout=60)
                for n in range(batch, batch + 250)], return_exceptions=True)
        errors = [r for r in results if isinstance(r, IqError)]
        assert len(results) - len(errors) == 256
        assert {e.condition for e in errors} == {"not-acceptable"}
        assert "at most 256" in errors[0].text
        assert len(await bookmarks(x)) == 256
        # the same in one private-storage set
        storage = ET.Element(f"{{{LEGACY}}}storage")
        for n in range(3000):
            ET.SubElement(storage, f"{{{LEGACY}}}conference", {"jid": f"r{n}@rooms.localhost"})
        iq = x.make_iq_set()
        ET.SubElement(iq.xml, f"{{{PRIVATE}}}query").append(storage)
        await refused("not-acceptable", iq.send(timeout=10))  # type: ignore[no-untyped-call]
        # the identity's whole PEP budget: many nodes of big items
        blob = ET.Element("{urn:example}blob")
        blob.text = "y" * 40_000
        for n in range(10):
            try:
                await publish(x, f"urn:example:n{n}", "i", blob)
            except IqError as err:
                assert err.condition == "resource-constraint" and "KiB" in err.text
                break
        else:
            raise AssertionError("256 KiB of PEP per identity was not enforced")
        await x.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=5)  # still served
    finally:
        await alice.close()


async def test_a_ten_megabyte_publish_ends_the_stream_not_the_server(server: C2SServer) -> None:
    alice = await login(server, "alice")
    blob = ET.Element("{urn:example}blob")
    blob.text = "z" * (10 * 1024 * 1024)
    publish_iq(alice.xmpp, "urn:example:big", "i", blob).send()
    await asyncio.wait_for(alice.closed.wait(), 30)  # the stanza limit: a stream error
    again = await login(server, "alice")
    try:
        await refused("item-not-found", items(again.xmpp, "urn:example:big"))
    finally:
        await again.close()
