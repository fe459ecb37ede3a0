"""Identity, invitation, contact, peer and passphrase commands through the real
executable, with the daemon stopped (the key file opened directly) and running (the
control channel, so a connected Jabber client sees the change at once)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemonproc import Paranoim
from tests.interop.drivers import SlixClient
from tests.util import wait_until

LINK_RE = re.compile(r"^paranoim:1/[a-z2-7]{56}\S*$", re.M)


def ok(res: object) -> str:
    assert res.returncode == 0, (res.stdout, res.stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in res.stderr  # type: ignore[attr-defined]
    return str(res.stdout)  # type: ignore[attr-defined]


def fields(text: str) -> dict[str, str]:
    """The labelled lines of an identity or contact block."""
    return {m[1]: m[2] for m in re.finditer(r"^\s+(\w[\w ]*):\s+(\S+)$", text, re.M)}


def error(res: object, code: int, *needles: str) -> str:
    assert res.returncode == code, (res.stdout, res.stderr)  # type: ignore[attr-defined]
    last = res.stderr.strip().splitlines()[-1]  # type: ignore[attr-defined]
    assert last.startswith("paranoim: error: ") and "Traceback" not in res.stderr  # type: ignore[attr-defined]
    for n in needles:
        assert n in last, last
    return str(last)


def test_without_daemon_then_with_it(pim: Paranoim, free_port: Callable[[], int]) -> None:
    assert "No identity yet" in ok(pim.run("id", "list"))
    alice = fields(ok(pim.run("id", "new", "Alice")))
    assert len(alice["Address"]) == 56 and alice["JID"] == "alice@localhost"
    assert len(alice["Password"]) >= 16
    listed = ok(pim.run("id", "list"))
    assert fields(listed) == alice and listed.startswith("Alice\n")

    inv = ok(pim.run("invite", "--no-qr"))
    link = LINK_RE.search(inv)[0]  # type: ignore[index]
    assert alice["Address"] in link

    other = Paranoim(pim.root / "other")
    bob = fields(ok(other.run("id", "new", "Bob")))
    bob_link = LINK_RE.search(ok(other.run("invite", "Bob", "--no-qr")))[0]  # type: ignore[index]
    added = ok(pim.run("contact", "add", bob_link, "--name", "Bobby"))
    assert "Added Bobby" in added and f"{bob['Address']}@p2p.localhost" in added
    assert "Bobby" in ok(pim.run("contact", "list"))

    # the daemon starts with what was written while it was stopped
    d = pim.start_daemon(free_port=free_port)
    assert fields(ok(pim.run("id", "list"))) == alice
    assert "Bobby" in ok(pim.run("contact", "list", "--id", "alice"))
    assert d.stop() == 0


async def test_running_daemon_pushes_contact_to_client(pim: Paranoim,
                                                       free_port: Callable[[], int]) -> None:
    d = await asyncio.to_thread(pim.start_daemon, free_port=free_port)
    carol = fields(ok(await asyncio.to_thread(pim.run, "id", "new", "Carol")))
    # the running daemon took the new identity at once: a client logs in with it
    xmpp_port = int(pim.runtime()["ports"]["xmpp"])  # type: ignore[index]
    client = SlixClient(carol["JID"], carol["Password"], port=xmpp_port,
                        ca_cert=pim.data_dir / "xmpp-cert.pem")
    await client.start()
    try:
        other = Paranoim(pim.root / "other")
        dave = fields(ok(await asyncio.to_thread(other.run, "id", "new", "Dave")))
        res = await asyncio.to_thread(pim.run, "contact", "add", dave["Address"], "--name",
                                      "Dave D")
        assert "not running" not in ok(res) + res.stderr
        jid = f"{dave['Address']}@p2p.localhost"
        await wait_until(lambda: jid in client.client_roster, timeout=20,
                         message="roster push of the new contact")
        assert client.client_roster[jid]["name"] == "Dave D"
    finally:
        await client.stop()
    assert await asyncio.to_thread(d.stop) == 0


def test_invite_qr_decodes_to_the_link(pim: Paranoim) -> None:
    ok(pim.run("id", "new", "Erin"))
    out = ok(pim.run("invite", "Erin", env={"PYTHONIOENCODING": "utf-8"}))
    link = LINK_RE.search(out)[0]  # type: ignore[index]
    art = [ln for ln in out.splitlines() if ln and set(ln) <= set("█▀▄ ")]
    assert len(art) > 10
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    # segno's compact terminal art: two modules per character, light drawn as a block
    rows: list[list[int]] = []
    for ln in art:
        top = [0 if c in "█▀" else 1 for c in ln]
        bottom = [0 if c in "█▄" else 1 for c in ln]
        rows += [top, bottom]
    width = max(len(r) for r in rows)
    scale = 8
    img = Image.new("L", (width * scale, len(rows) * scale), 255)
    for y, row in enumerate(rows):
        for x, dark in enumerate(row):
            if dark:
                img.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    decoded = zxingcpp.read_barcodes(img)
    assert decoded and decoded[0].text == link


@pytest.mark.parametrize("running", [False, True])
def test_vanity_shows_progress(pim: Paranoim, free_port: Callable[[], int],
                               running: bool) -> None:
    d = pim.start_daemon(free_port=free_port) if running else None
    res = pim.run("id", "new", "Vera", "--vanity", "ab")
    out = ok(res)
    assert fields(out)["Address"].startswith("ab")
    assert "Searching for an address starting with 'ab'" in res.stderr
    assert "keys tried" in res.stderr
    if d is not None:
        assert d.stop() == 0


def test_passphrase_set_and_clear(pim: Paranoim, free_port: Callable[[], int]) -> None:
    ok(pim.run("id", "new", "Frank"))
    ok(pim.run("passphrase", "set", env={"PARANOIM_NEW_PASSPHRASE": "s3cret pass"}))
    assert (pim.data_dir / "keys.pim").read_bytes().startswith(b"PIMK1\n")
    error(pim.run("id", "list"), 4, "encrypted", "PARANOIM_PASSPHRASE")
    error(pim.run("id", "list", env={"PARANOIM_PASSPHRASE": "nope"}), 4, "wrong passphrase")
    assert "Frank" in ok(pim.run("id", "list", env={"PARANOIM_PASSPHRASE": "s3cret pass"}))
    # through the running daemon: no passphrase needed by the command, it has the keys
    d = pim.start_daemon(free_port=free_port, env={"PARANOIM_PASSPHRASE": "s3cret pass"})
    assert "Frank" in ok(pim.run("id", "list"))
    ok(pim.run("passphrase", "clear"))
    assert d.stop() == 0
    assert (pim.data_dir / "keys.pim").read_bytes().startswith(b"PIMK0\n")
    assert "Frank" in ok(pim.run("id", "list"))


def test_user_errors(pim: Paranoim) -> None:
    error(pim.run("invite"), 1, "no identity yet", "paranoim id new")
    ok(pim.run("id", "new", "Gina"))
    error(pim.run("contact", "add", "paranoim:1/abc?c=zzzzzz"), 1, "checksum")
    error(pim.run("contact", "add", "hello"), 1, "neither a ParanoIM link")
    error(pim.run("invite", "nobody"), 1, "no single identity matches 'nobody'", "Gina")
    error(pim.run("id", "new", "   "), 1, "nickname")
    error(pim.run("id", "new", "X", "--vanity", "0O1"), 1)
    error(pim.run("passphrase", "set"), 1, "PARANOIM_NEW_PASSPHRASE")


@pytest.mark.parametrize("command", [["status"], ["peers"], ["stop"], ["peers", "add",
                                                                     "127.0.0.1:9"]])
def test_daemon_not_running(pim: Paranoim, command: list[str]) -> None:
    error(pim.run(*command), 5, "not running", "paranoim run")


def test_peers_add_and_remove(pim: Paranoim, free_port: Callable[[], int]) -> None:
    d = pim.start_daemon(free_port=free_port)
    closed = f"127.0.0.1:{free_port()}"  # nobody listens: the dialler keeps trying
    assert "Added peer" in ok(pim.run("peers", "add", closed))
    assert "Removed peer" in ok(pim.run("peers", "remove", closed))
    error(pim.run("peers", "add", "nonsense"), 1, "host:port", "192.0.2.7:45069")
    error(pim.run("peers", "add", "http://x.org:1"), 1, "not a URL")
    res = pim.run("peers", "add")
    assert res.returncode == 2 and "HOST:PORT" in res.stderr
    assert d.stop() == 0


def test_python_dash_m_and_data_dir_everywhere(pim: Paranoim, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**pim.env}
    env.pop("PARANOIM_DATA_DIR")
    other = tmp_path / "elsewhere"
    res = subprocess.run([sys.executable, "-m", "bridge", "id", "new", "Hal", "--data-dir",
                          str(other)], env=env, capture_output=True, text=True, check=False,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert (other / "keys.pim").exists()
    # before and after the subcommand name
    assert "Hal" in ok(pim.run("--data-dir", str(other), "id", "list"))
    assert "Hal" in ok(pim.run("id", "list", "--data-dir", str(other)))
    assert "No identity" in ok(pim.run("id", "list"))


def test_closed_pipe_ends_quietly(pim: Paranoim) -> None:
    """`paranoim id list | head -1`: when the reader goes away the command stops
    without an error line, as other command-line programs do."""
    import os
    import subprocess

    from tests.daemonproc import executable

    assert pim.run("id", "new", "Pipe").returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read
    proc = subprocess.run([executable(), "id", "list"], env=pim.env, stdout=write_end,
                          stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "error" not in proc.stderr and "Traceback" not in proc.stderr


FAILING = [["invite", "nobody"], ["contact", "add", "hello"],
           ["contact", "add", "paranoim:1/abc?c=zzzzzz"], ["id", "new", "X", "--vanity", "0O1"],
           ["contact", "list", "--id", "nobody"], ["id", "new", "   "]]


def test_a_failing_command_fails_alike_with_and_without_the_daemon(
        pim: Paranoim, free_port: Callable[[], int]) -> None:
    """The same exit code and message whether the key file is opened here or the
    daemon answers over its control channel."""
    ok(pim.run("id", "new", "Ivan"))

    def outcome(cmd: list[str]) -> tuple[int, str]:
        res = pim.run(*cmd)
        assert "Traceback" not in res.stderr
        return res.returncode, res.stderr.strip().splitlines()[-1]

    offline = [outcome(cmd) for cmd in FAILING]
    assert all(code != 0 for code, _ in offline)
    d = pim.start_daemon(free_port=free_port)
    online = [outcome(cmd) for cmd in FAILING]
    assert d.stop() == 0
    assert online == offline


def test_id_new_offline_names_the_configured_port(pim: Paranoim) -> None:
    pim.write_config("[xmpp]\nport = 5299\n")
    assert "port 5299, STARTTLS" in ok(pim.run("id", "new", "Jo"))
    pim.write_config("[xmpp]\nport = 0\n")  # any free port: only the daemon knows it
    out = ok(pim.run("id", "new", "Ky"))
    assert "port 0" not in out and "the XMPP port `paranoim run` prints" in out


def test_component_mode_names_the_users_own_account(pim: Paranoim) -> None:
    """Without the embedded listener an identity is used from the person's own account
    on their server, linked by registering with the gateway: never name@localhost."""
    import json

    pim.write_config("[xmpp]\nlistener = false\n"
                     + '[component]\ndomain = "p2p.example.org"\nsecret = "s3cret"\n')
    new = ok(pim.run("id", "new", "Lena"))
    address = fields(new)["Address"]
    assert "@localhost" not in new
    assert "none linked yet: register with p2p.example.org" in new
    assert "register with the gateway p2p.example.org" in new
    (pim.data_dir / "xmpp-links.json").write_text(json.dumps(
        {"version": 1, "links": [{"jid": "lena@example.org", "address": address}]}))
    listed = ok(pim.run("id", "list"))
    assert fields(listed)["JID"] == "lena@example.org" and "@localhost" not in listed
    other = Paranoim(pim.root / "other")
    mo = fields(ok(other.run("id", "new", "Mo")))
    added = ok(pim.run("contact", "add", mo["Address"], "--name", "Mo"))
    assert fields(added)["JID"] == f"{mo['Address']}@p2p.example.org"
    assert f"{mo['Address']}@p2p.example.org" in ok(pim.run("contact", "list"))
