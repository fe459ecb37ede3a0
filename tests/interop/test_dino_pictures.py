"""Dino and Gajim send pictures to each other across two daemons.

Two real ``paranoim run`` daemons, A and B, Alice on A and Bob on B, contacts of each
other; Dino 0.4 (Debian's ``dino-im``) on one side, Gajim 1.7 on the other, each under
Xvfb. Dino connects only to ``localhost:5222``, so the XMPP listener of the daemon Dino
uses is there (the test fails if something else holds the port), and it trusts only
system-trusted certificates: it runs where the system CA store holds its daemon's
certificate (a mount namespace, root only; see ``drivers/dino.py``), as
docs/user-guide-clients.md tells a person to install it.

- Gajim (Alice, A) sends a picture by its own XEP-0363 code (see test_gajim_pictures.py);
  Dino (Bob, B) receives a link to Bob's own daemon as an XEP-0066 OOB URL, asks it
  for the file's size and type (HEAD), downloads it over HTTPS and shows it; the bytes
  it kept are the picture.
- Dino (Alice, A) sends a picture as a person does, through its file chooser (driven
  with xdotool): it uploads into daemon A over HTTPS and sends the link; Bob's Gajim on
  B gets a link to daemon B and shows the picture; the bytes it stored are the picture.

Screenshots of Dino and Gajim showing the picture go to tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.e2e_support import Client, Daemon, pair_from_template
from tests.interop.drivers._common import ProgramMissing, apoll_until, port_accepts, tail
from tests.interop.drivers.dino import Dino, NeedsRoot
from tests.interop.drivers.gajim import Gajim
from tests.interop.test_gajim_pictures import (
    FOUND_UPLOAD,
    SHOWN,
    UPLOADED,
    gajim_for,
    picture,
    shows_sunset,
    stored,
)
from tests.util import skip_or_fail

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DINO_PORT = 5222
UPLOAD_FEATURE = "urn:xmpp:http:upload:0"
OOB_SENT = "{jabber:x:oob}:url"  # in Dino's stanza log: a message carrying a file's link


def start_daemons(a: Daemon, b: Daemon, dino_on: Daemon) -> None:
    """A, then B linked to A; the one Dino uses listens on localhost:5222."""
    if port_accepts(DINO_PORT):
        raise AssertionError(f"port {DINO_PORT} is taken; Dino can only connect there")
    here = ("--xmpp-port", str(DINO_PORT))
    a.start(*(here if dino_on is a else ()))
    b.start("--peer", a.p2p, *(here if dino_on is b else ()))


@pytest.fixture
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("dino"))
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


def dino_for(daemon: Daemon, nick: str) -> Dino:
    account = daemon.accounts[nick]
    try:
        return Dino(account.jid, account.password, daemon.cert, name=nick)
    except (ProgramMissing, NeedsRoot) as exc:
        skip_or_fail(str(exc))


def keep(dino: Dino, gajim: Gajim, daemon: Daemon, stem: str) -> None:
    """What each program did, for a failure's diagnosis: logs and Dino's database."""
    ARTIFACTS.mkdir(exist_ok=True)
    if dino.db.exists():  # Dino's own account of each file (with its WAL)
        with contextlib.closing(sqlite3.connect(dino.db)) as db, \
                contextlib.closing(sqlite3.connect(ARTIFACTS / f"{stem}.db")) as copy:
            db.backup(copy)
    for log, name in ((dino.log, "dino"), (gajim.log, "gajim"), (daemon.log, "daemon")):
        if log.exists():
            shutil.copy(log, ARTIFACTS / f"{stem}-{name}.log")


async def linked(a: Daemon, alice_nick: str = "Alice") -> None:
    watch = await Client(a.accounts[alice_nick], a, "watch").login()
    try:
        await watch.wait(watch.peers, 20, "daemon A linked to B")
    finally:
        await watch.close()


async def test_dino_shows_a_picture_gajim_sent_from_another_daemon(
        daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    start_daemons(a, b, dino_on=b)
    alice, bob = a.accounts["Alice"], b.accounts["Bob"]
    sunset = picture()
    dino = dino_for(b, "Bob")
    try:
        sender = gajim_for(a, "Alice")
    except BaseException:
        dino.cleanup()
        raise
    watch = Client(alice, a, "watch")
    try:
        await watch.login()
        await watch.wait(watch.peers, 20, "daemon A linked to B")
        dino.setup()
        dino.start(open_chat=alice.contact_jid)
        sender.start()
        await sender.wait_count(FOUND_UPLOAD, 1)
        # Until Dino is in and has kept a message from Alice (sent again every 2 s until
        # it has), so that the picture comes into a conversation Dino already shows.
        tries = 0

        def hello() -> bool:
            nonlocal tries
            if any(body.startswith("Hello Bob") for body in dino.bodies()):
                return True
            tries += 1
            watch.chat(bob.contact_jid, f"Hello Bob ({tries})")
            return False
        await apoll_until(hello, 60, "a message from Alice kept by Dino", interval=2,
                          on_timeout=lambda: tail(dino.log))
        path = sender.inbox / "sunset.png"
        path.write_bytes(sunset)
        await sender.ask("show_chat", account=Gajim.account, jid=bob.contact_jid)
        await sender.ask("send_file", account=Gajim.account, jid=bob.contact_jid,
                         path=str(path))
        await sender.wait_count(UPLOADED, 1)
        await dino.wait_for("sunset.png", timeout=60)  # the message is in
        kept = await dino.wait_file(sunset, timeout=30)  # downloaded from B over HTTPS
        assert kept.read_bytes() == sunset
        assert [row[3] for row in dino.transfers()] == [0]  # one file, complete
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dino-picture-received.png"

        def drawn() -> bool:
            dino.screenshot(shot)
            return shows_sunset(shot)
        await apoll_until(drawn, 20, "the picture in Dino's window", interval=0.3)
    finally:
        dino.stop()
        sender.stop()
        keep(dino, sender, b, "dino-received")
        dino.cleanup()
        sender.cleanup()
        await watch.close()  # after Dino: its messages were still on the way


async def test_dino_sends_a_picture_that_the_contacts_gajim_shows(
        daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    start_daemons(a, b, dino_on=a)
    alice, bob = a.accounts["Alice"], b.accounts["Bob"]
    sunset = picture()
    dino = dino_for(a, "Alice")
    try:
        receiver = gajim_for(b, "Bob")
    except BaseException:
        dino.cleanup()
        raise
    try:
        await linked(a)
        dino.setup()
        dino.start(open_chat=bob.contact_jid)
        receiver.start()
        await receiver.wait_count(FOUND_UPLOAD, 1)  # Bob's Gajim is in
        await dino.wait_for(UPLOAD_FEATURE, timeout=60)  # Dino found the upload service
        path = dino.home / "sunset.png"
        path.write_bytes(sunset)
        dino.user.chown_tree(dino.home)
        await dino.send_file(path)
        await dino.wait_for(OOB_SENT, timeout=30)  # uploaded, and the link sent
        sent = [row for row in dino.transfers() if row[0] == 1]

        await receiver.wait_count("sunset.png</url>", 1, timeout=90)  # the message is in
        await receiver.ask("show_chat", account=Gajim.account, jid=alice.contact_jid)
        await receiver.wait_count(SHOWN, 1, timeout=30)  # downloaded and shown inline
        assert stored(receiver, "sunset") == sunset  # the bytes Bob's Gajim shows
        assert len(sent) == 1, sent
        ARTIFACTS.mkdir(exist_ok=True)
        for name, take in (
                ("dino-picture-sent-gajim.png", None), ("dino-picture-sent.png", dino)):
            shot = (receiver.inbox if take is None else dino.home) / name

            async def drawn(shot: Path = shot, take: Dino | None = take) -> bool:
                if take is None:
                    await receiver.ask("screenshot", path=str(shot))
                else:
                    take.screenshot(shot)
                return shows_sunset(shot)
            await apoll_until(drawn, 20, f"the picture in {name}", interval=0.3)
            shutil.copy(shot, ARTIFACTS / name)
    finally:
        dino.stop()
        receiver.stop()
        keep(dino, receiver, a, "dino-sent")
        dino.cleanup()
        receiver.cleanup()
