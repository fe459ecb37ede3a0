"""Gajim sends a picture to a contact on another daemon, and the contact's Gajim shows it.

Two real ``paranoim run`` daemons, Alice on A and Bob on B, contacts of each other; a
Gajim 1.7 (Debian's) under Xvfb for each, as two users' installs side by side. Alice's
Gajim sends the picture by its own XEP-0363 code (``HTTPUpload.send_file``, what its
"Send File" button calls once a file is picked; the driver's plugin asks it, see
``drivers/gajim.py``): it finds the upload service in the daemon's disco#info, asks a
slot, PUTs the file over HTTPS and sends the link with an XEP-0066 OOB URL. Daemon A
sends the file to B in chunks; Bob's Gajim gets a link to his own daemon and, as it
does for an OOB URL from a contact, downloads it and shows it inline. The bytes Bob's
Gajim stored, and those at the URL it was given, are the picture Alice sent.

Gajim uploads only to https slots and checks the certificate against the system's CA
store, so each Gajim runs where the system store holds its daemon's certificate (a
mount namespace: root only), as docs/user-guide-clients.md tells a person to install
it. Screenshots of both main windows go to tests/artifacts/.
"""

from __future__ import annotations

import re
import shutil
import ssl
import struct
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.e2e_support import Client, Daemon, pair_from_template, start_pair
from tests.interop.drivers._common import ProgramMissing, apoll_until
from tests.interop.drivers.gajim import Gajim, NeedsRoot
from tests.util import skip_or_fail

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
UPLOADED = "Upload completed successfully"
FOUND_UPLOAD = "Discovered component: localhost"
SHOWN = "Thumbnail stored"


def picture(width: int = 360, height: int = 240) -> bytes:
    """A small RGB PNG anyone recognises in a screenshot: a sun setting over the sea."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    horizon, sun = height * 2 // 3, (width // 2, height * 2 // 3, height // 4)
    rows = []
    for y in range(height):
        row = bytearray(b"\0")
        for x in range(width):
            if y < horizon:
                t = y / horizon
                r, g, b = 40 + int(215 * t), 60 + int(120 * t), 140 - int(60 * t)
                if (x - sun[0]) ** 2 + (y - sun[1]) ** 2 < sun[2] ** 2:
                    r, g, b = 255, 200 - int(80 * t), 60
            else:
                wave = 20 if (y // 6 + x // 24) % 2 else 0
                r, g, b = 20 + wave, 50 + wave, 110 + wave
            row += bytes((r, g, b))
        rows.append(bytes(row))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


SEA = (20, 50, 110)  # the darker waves of ``picture()``


def shows_sunset(screenshot: Path) -> bool:
    """Whether a screenshot shows ``picture()``: its sea, a few thousand pixels of it."""
    with Image.open(screenshot) as image:
        rgb = image.convert("RGB").tobytes()
    sea = sum(1 for i in range(0, len(rgb), 3)
              if abs(rgb[i] - SEA[0]) + abs(rgb[i + 1] - SEA[1]) + abs(rgb[i + 2] - SEA[2]) < 24)
    return sea > 3000


@pytest.fixture
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("pics"))
    try:
        start_pair(a, b)
        yield a, b
    finally:
        b.stop()
        a.stop()


def gajim_for(daemon: Daemon, nick: str) -> Gajim:
    account = daemon.accounts[nick]
    try:
        return Gajim(account.jid.split("@")[0], account.password, daemon.port("xmpp"),
                     daemon.cert, driven=True, trust_https=True)
    except (ProgramMissing, NeedsRoot) as exc:
        skip_or_fail(str(exc))


def fetch(url: str, cert: Path) -> bytes:
    """A GET as a local client that trusts the daemon's certificate makes it."""
    context = ssl.create_default_context(cafile=cert)
    with urllib.request.urlopen(url, context=context, timeout=10) as resp:
        return bytes(resp.read())


def stored(gajim: Gajim, stem: str) -> bytes:
    """The picture Gajim downloaded for its preview (``<stem>_<sha1 of URL>.png``)."""
    found = [p for p in gajim.home.rglob(f"{stem}_*.png") if "thumb" not in str(p.parent)]
    assert len(found) == 1, found
    return found[0].read_bytes()


async def test_gajim_sends_a_picture_that_the_contacts_gajim_shows(
        daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    alice, bob = a.accounts["Alice"], b.accounts["Bob"]
    sunset = picture()
    watch = await Client(alice, a, "watch").login()
    try:
        await watch.wait(watch.peers, 20, "daemon A linked to B")
    finally:
        await watch.close()

    sender, receiver = gajim_for(a, "Alice"), gajim_for(b, "Bob")
    try:
        sender.start()
        receiver.start()
        await sender.wait_count(FOUND_UPLOAD, 1)  # XEP-0363 from the daemon's disco#info
        await receiver.wait_count(FOUND_UPLOAD, 1)
        path = sender.inbox / "sunset.png"
        path.write_bytes(sunset)
        await sender.ask("show_chat", account=Gajim.account, jid=bob.contact_jid)
        await sender.ask("send_file", account=Gajim.account, jid=bob.contact_jid,
                         path=str(path))
        await sender.wait_count(UPLOADED, 1)
        text = sender.text()
        mine = re.escape(f"https://127.0.0.1:{a.port('upload')}/file/")
        assert re.search(f"Uploading file to https://127.0.0.1:{a.port('upload')}/upload/", text)
        assert re.search(f"Please download from {mine}\\S+/sunset.png", text)

        await receiver.wait_count("sunset.png</url>", 1, timeout=60)  # the message is in
        urls = set(re.findall(
            re.escape(f"https://127.0.0.1:{b.port('upload')}/file/") + r"[\w-]+/sunset\.png",
            receiver.text()))
        assert len(urls) == 1, urls  # a link to Bob's own daemon, not to Alice's
        assert fetch(urls.pop(), b.cert) == sunset
        await receiver.ask("show_chat", account=Gajim.account, jid=alice.contact_jid)
        await receiver.wait_count(SHOWN, 1, timeout=30)  # downloaded and shown inline
        assert stored(receiver, "sunset") == sunset  # the bytes Bob's Gajim shows

        await sender.wait_count(SHOWN, 1, timeout=30)  # Alice's Gajim shows what it sent
        assert stored(sender, "sunset") == sunset
        for gajim, name in ((sender, "gajim-picture-sent.png"),
                            (receiver, "gajim-picture-received.png")):
            shot = gajim.inbox / name

            async def drawn(gajim: Gajim = gajim, shot: Path = shot) -> bool:
                await gajim.ask("screenshot", path=str(shot))
                return shows_sunset(shot)
            await apoll_until(drawn, 20, f"the picture in {name}", interval=0.3)
            shutil.copy(shot, ARTIFACTS / name)
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        for gajim, name in ((sender, "alice"), (receiver, "bob")):
            gajim.stop()
            if gajim.log.exists():  # what each Gajim did, for a failure's diagnosis
                shutil.copy(gajim.log, ARTIFACTS / f"gajim-pictures-{name}.log")
            gajim.cleanup()
