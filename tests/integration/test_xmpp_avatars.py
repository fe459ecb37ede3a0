"""The XMPP side of avatars between contacts (``bridge.xmpp.avatars``): the identity's
picture is given to the service when a client sets it, and again, unsent, when the
listener starts (for contacts accepted later); a contact's picture the service kept is
shown as a server shows a contact's avatar. The real listener over loopback, the
contract-tested fake service; two real daemons are in ``test_e2e_avatars.py``.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from bridge.events import ContactAvatarChanged
from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient
from tests.integration.pep_support import AVATAR_DATA, VCARD, items, png, vcard_with_photo
from tests.util import wait_until

CONTACT = "p2p.localhost"


async def login(server: C2SServer, user: str) -> SlixClient:
    return await SlixClient(f"{user}@localhost/t", f"{user}-pw", server.cert_path
                            ).connect(server.port)


async def test_the_picture_is_shared_when_set_and_again_unsent_at_start(tmp_path: Path) -> None:
    service = FakeService()
    alice = service.add_user("alice", "alice-pw").address
    server = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await server.start()
    client = await login(server, "alice")
    picture = png(5, 5)
    try:
        iq = client.xmpp.make_iq_set()
        iq.xml.append(vcard_with_photo(picture))
        await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        assert service.avatars_shared == [(alice, picture, True)]
        iq = client.xmpp.make_iq_set()
        iq.xml.append(vcard_with_photo(b"GIF89a" + bytes(50), "image/gif"))
        with pytest.raises(IqError):
            await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        assert len(service.avatars_shared) == 1  # nothing refused reaches the service
    finally:
        await client.close()
        await server.close()
    again = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await again.start()
    try:
        assert service.avatars_shared[1:] == [(alice, picture, False)]
    finally:
        await again.close()


async def test_a_contacts_picture_is_shown_as_a_servers_contact_avatar(tmp_path: Path) -> None:
    service = FakeService()
    alice = service.add_user("alice", "alice-pw").address
    bob = service.add_user("bob", "bob-pw").address
    service.add_contact(alice, bob, "Bob")
    server = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await server.start()
    client = await login(server, "alice")
    them = f"{bob}@{CONTACT}"
    seen: list[Any] = []
    client.xmpp.add_event_handler("presence_available", seen.append)
    try:
        picture = png(6, 6)
        sha = hashlib.sha1(picture).hexdigest()
        service.contact_avatars[(alice, bob)] = ("image/png", picture)
        service.emit(ContactAvatarChanged(alice, bob, sha, "image/png", len(picture)))
        await wait_until(lambda: any(
            p["from"].bare == them and p.xml.findtext(
                "{vcard-temp:x:update}x/{vcard-temp:x:update}photo") == sha for p in seen), 10)
        iq = client.xmpp.make_iq_get(ito=them)
        ET.SubElement(iq.xml, f"{{{VCARD}}}vCard")
        reply = await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        binval = reply.xml.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
        assert base64.b64decode(binval or "") == picture
        [(item_id, data)] = await items(client.xmpp, AVATAR_DATA, them)
        assert item_id == sha and base64.b64decode(data.text or "") == picture
        with pytest.raises(IqError) as refused:
            await items(client.xmpp, AVATAR_DATA, f"{alice}@{CONTACT}")  # none known
        assert refused.value.condition == "item-not-found"
    finally:
        await client.close()
        await server.close()
