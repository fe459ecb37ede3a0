"""End to end: a contact's avatar crosses the network (two real ``paranoim run``
daemons, slixmpp clients).

Alice (daemon A) publishes her picture as Gajim does (XEP-0084: data, then
metadata); her daemon sends it to her accepted contacts. Bob's client (daemon B) sees
it as a server would show a contact's avatar: the contact's presence carries the
XEP-0153 photo hash, an XEP-0084 metadata event comes from the contact's JID, and
both a vCard-temp get and an XEP-0084 items get on that JID answer the same bytes.
A change (set with vCard-temp, as Pidgin does) reaches Bob too; what is not a
picture, or too large, is refused at Alice's client and nothing leaves.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from tests.integration.e2e_support import Client, Daemon, pair_from_template, start_pair
from tests.integration.pep_support import (
    AVATAR_DATA,
    AVATAR_META,
    EVENT,
    VCARD,
    avatar_data,
    items,
    png,
    publish,
    vcard_with_photo,
)

pytestmark = pytest.mark.slow
UPDATE = "vcard-temp:x:update"


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp("avatars"))
    try:
        start_pair(a, b)
        yield a, b
    finally:
        b.stop()
        a.stop()


def photo_hashes(client: Client, jid: str) -> list[str]:
    """The XEP-0153 photo hashes of the available presences from ``jid``, in order."""
    found = []
    for p in client.presences:
        if p["from"].bare == jid and p["type"] in ("", "available"):
            x = p.xml.find(f"{{{UPDATE}}}x")
            if x is not None:  # "-": no <photo/> at all, nothing said yet
                found.append(x.findtext(f"{{{UPDATE}}}photo", "-"))
    return found


def metadata_events(client: Client, jid: str) -> list[tuple[str, str]]:
    """(item id, info bytes) of the XEP-0084 metadata events from ``jid``."""
    found = []
    for m in client.messages:
        if m["from"].bare != jid or m["type"] != "headline":
            continue
        for item in m.xml.iter(f"{{{EVENT}}}item"):
            info = item.find(f"{{{AVATAR_META}}}metadata/{{{AVATAR_META}}}info")
            if info is not None:
                found.append((item.get("id", ""), info.get("bytes", "")))
    return found


async def vcard_of(client: Client, jid: str) -> bytes | None:
    iq = client.make_iq_get(ito=jid)
    ET.SubElement(iq.xml, f"{{{VCARD}}}vCard")
    reply: Any = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    binval = reply.xml.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
    return base64.b64decode(binval) if binval else None


async def set_vcard(client: Client, vcard: ET.Element) -> None:
    iq = client.make_iq_set()
    iq.xml.append(vcard)
    await iq.send(timeout=10)  # type: ignore[no-untyped-call]


async def publish_avatar(client: Client, image: bytes) -> str:
    """As Gajim publishes an avatar: the data node, then the metadata node."""
    sha, data = avatar_data(image)
    await publish(client, AVATAR_DATA, sha, data)
    meta = ET.Element(f"{{{AVATAR_META}}}metadata")
    ET.SubElement(meta, f"{{{AVATAR_META}}}info",
                  {"id": sha, "bytes": str(len(image)), "type": "image/png"})
    await publish(client, AVATAR_META, sha, meta)
    return sha


async def test_alices_avatar_reaches_bobs_client_and_a_change_follows(
        daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    alice = await Client(a.accounts["Alice"], a).login()
    bob = await Client(b.accounts["Bob"], b).login()
    them = a.accounts["Alice"].contact_jid
    try:
        await bob.wait(lambda: photo_hashes(bob, them), 20, "Alice's presence at login")
        assert photo_hashes(bob, them) == ["-"]  # no picture known: <x/> without <photo/>
        assert await vcard_of(bob, them) is None
        with pytest.raises(IqError) as refused:
            await items(bob, AVATAR_DATA, them)
        assert refused.value.condition == "item-not-found"

        first = png(8, 8, pad=70 * 1024)  # more than one chunk of 60 KiB
        sha = await publish_avatar(alice, first)
        await bob.wait(lambda: sha in photo_hashes(bob, them), 60, "the photo hash")
        await bob.wait(lambda: (sha, str(len(first))) in metadata_events(bob, them), 10,
                       "the XEP-0084 metadata event")
        assert await vcard_of(bob, them) == first
        [(item_id, data)] = await items(bob, AVATAR_DATA, them)
        assert item_id == sha and base64.b64decode(data.text or "") == first
        [(meta_id, meta)] = await items(bob, AVATAR_META, them)
        info = meta.find(f"{{{AVATAR_META}}}info")
        assert meta_id == sha and info is not None and info.get("type") == "image/png"

        second = png(3, 3)  # changed the way Pidgin does it: vCard-temp
        sha2 = hashlib.sha1(second).hexdigest()
        await set_vcard(alice, vcard_with_photo(second))
        await bob.wait(lambda: photo_hashes(bob, them)[-1:] == [sha2], 60, "the new hash")
        assert await vcard_of(bob, them) == second

        # Not a picture, or too large: refused at Alice's client, nothing leaves.
        for bad in (b"GIF89a" + b"\0" * 100, png(2, 2, pad=130 * 1024)):
            with pytest.raises(IqError) as refused:
                await set_vcard(alice, vcard_with_photo(bad))
            assert refused.value.condition == "not-acceptable"
        await alice.ping_server()
        bob.chat(them, "after the refused pictures")
        await alice.wait_body(b.accounts["Bob"].contact_jid, "after the refused pictures", 30)
        assert photo_hashes(bob, them)[-1] == sha2 and await vcard_of(bob, them) == second

        # A client that logs in later sees the hash in the contact's first presence, and
        # gets the metadata event as a server sends a node's last item.
        late = await Client(b.accounts["Bob"], b, "late").login()
        try:
            await late.wait(lambda: photo_hashes(late, them), 20, "presence at login")
            assert photo_hashes(late, them) == [sha2]
            await late.wait(lambda: metadata_events(late, them), 10, "the event at login")
            assert metadata_events(late, them) == [(sha2, str(len(second)))]
        finally:
            await late.close()
    finally:
        await alice.close()
        await bob.close()
