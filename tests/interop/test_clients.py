"""Real clients nobody here wrote, against the embedded listener of the real daemon.

Two ``paranoim run`` processes, each with its own data dir, peered over loopback
(B is started with ``--peer 127.0.0.1:<A's P2P port>``) at the lowest PoW
difficulty. profanity, poezio and finch (libpurple, the core of Pidgin) each log
in to daemon A over STARTTLS, trusting its self-signed certificate the way a
person would set that client up (profanity ``tls.policy=trust``; poezio
``ca_cert_path``; finch a pre-seeded ``tls_peers/127.0.0.1`` entry, what its accept
dialog stores), send a message to Bob, a P2P contact whose slixmpp client is on
daemon B, and receive his answer. Missing programs fail in CI (CI=true) with the
Debian package to install, and skip otherwise.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.interop.drivers import (
    Finch,
    Poezio,
    Profanity,
    ProgramMissing,
    SlixClient,
    poll_until,
)
from tests.interop.drivers._common import stop_process, tail
from tests.util import skip_or_fail, wait_until

pytestmark = pytest.mark.interop

PARANOIM = Path(sys.executable).parent / "paranoim"
CONTACTS = "p2p.localhost"
CLIENTS: dict[str, type[Profanity | Poezio | Finch]] = {
    "profanity": Profanity,
    "poezio": Poezio,
    "finch": Finch,
}
NICKS = {"profanity": "Prof", "poezio": "Poe", "finch": "Finn"}


@dataclass(frozen=True, slots=True)
class Account:
    jid: str
    password: str
    address: str

    @property
    def contact_jid(self) -> str:
        return f"{self.address}@{CONTACTS}"


@dataclass
class Daemon:
    """One ``paranoim`` data dir and sandbox; ``run()`` starts the daemon."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    accounts: dict[str, Account] = field(default_factory=dict)

    def __post_init__(self) -> None:
        home = self.root / "home"
        self.data_dir = self.root / "data"
        self.config = self.root / "paranoim.toml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text('[p2p]\nlisten = "127.0.0.1"\n')
        self.env = {
            **os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"), "PYTHONUNBUFFERED": "1",
        }
        for key in ("PARANOIM_PASSPHRASE", "PARANOIM_CONFIG", "PARANOIM_DATA_DIR", "DISPLAY"):
            self.env.pop(key, None)

    def _argv(self, *args: str) -> list[str]:
        if not PARANOIM.exists():
            skip_or_fail(f"{PARANOIM} is missing: run `pip install -e .` in the venv")
        return [str(PARANOIM), "--config", str(self.config), "--data-dir",
                str(self.data_dir), *args]

    def new_identity(self, nick: str) -> Account:
        out = subprocess.run(self._argv("id", "new", nick), env=self.env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        fields = dict(re.findall(r"^\s+(Address|JID|Password):\s+(\S+)", out, re.M))
        account = Account(fields["JID"], fields["Password"], fields["Address"])
        self.accounts[nick] = account
        return account

    def run(self, *extra: str) -> Daemon:
        self.log = self.root / "daemon.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self._argv("run", "--xmpp-port", "0", "--web-port", "0", "--p2p-port", "0",
                           "--difficulty", "1", *extra),
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        poll_until(self._ready, 60, f"paranoim run in {self.root}", interval=0.1,
                   on_timeout=lambda: tail(self.log))
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"paranoim exited with {self.proc.returncode}\n{tail(self.log)}")
        return "Ready." in self.log.read_text(errors="replace")

    @property
    def runtime(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads((self.data_dir / "runtime.json").read_text())
        return doc

    def port(self, which: str) -> int:
        ports = self.runtime["ports"]
        assert isinstance(ports, dict)
        return int(ports[which])

    @property
    def cert(self) -> Path:
        return self.data_dir / "xmpp-cert.pem"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            stop_process(self.proc, timeout=20)
            self.proc = None


@dataclass
class Network:
    a: Daemon  # where the client under test logs in
    b: Daemon  # Bob's daemon


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("clients")
    a, b = Daemon(root / "a"), Daemon(root / "b")
    for nick in NICKS.values():
        a.new_identity(nick)
    b.new_identity("Bob")
    try:
        a.run()
        b.run("--peer", f"127.0.0.1:{a.port('p2p')}")
        yield Network(a, b)
    finally:
        b.stop()
        a.stop()


@pytest.fixture
async def bob(network: Network) -> AsyncIterator[SlixClient]:
    """Bob's slixmpp client on daemon B, once B has a live link to A."""
    account = network.b.accounts["Bob"]
    client = SlixClient(f"{account.jid}/slix", account.password,
                        port=network.b.port("xmpp"), ca_cert=network.b.cert)
    await client.start()
    client.send_chat("paranoim@localhost", "status")
    await client.wait_for_message("peers connected: 1", sender="paranoim@localhost",
                                  timeout=20)
    try:
        yield client
    finally:
        await client.stop()


@pytest.mark.parametrize("name", list(CLIENTS))
async def test_client_chats_with_a_p2p_contact(name: str, network: Network,
                                               bob: SlixClient) -> None:
    me = network.a.accounts[NICKS[name]]
    them = network.b.accounts["Bob"]
    # Bob accepts the client's identity as a contact (a subscription, as a client does)
    bob.send_presence(pto=me.contact_jid, ptype="subscribe")
    await wait_until(lambda: me.contact_jid in bob.client_roster
                     and bob.client_roster[me.contact_jid]["subscription"] == "both",
                     10, message="Bob's roster has the contact")

    try:
        client = CLIENTS[name](me.jid, me.password, port=network.a.port("xmpp"),
                               cert_pem=network.a.cert.read_text())
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    with client:
        await client.wait_logged_in(timeout=30)
        await client.send(them.contact_jid, f"hello bob from {name}")
        got = await bob.wait_for_message(f"hello bob from {name}", timeout=30)
        assert got.sender == me.contact_jid

        bob.send_chat(me.contact_jid, f"hi {name}, this is bob")
        received = await client.wait_for_message(f"hi {name}, this is bob", timeout=30)
        assert them.address in str(received)
        assert errors_from_server(client) == []


def errors_from_server(client: Profanity | Poezio | Finch) -> list[str]:
    """Error stanzas the listener sent the client, as far as its log shows them.

    Regression: profanity's bookmark request (XEP-0049 private storage) got
    service-unavailable at every login.
    """
    if isinstance(client, Profanity):
        log = client.debug_log.read_text(errors="replace") if client.debug_log.exists() else ""
        return re.findall(r"IQ error received.*", log)
    if isinstance(client, Finch):
        return [line for line in client.debug_text().splitlines()
                if "jabber: Recv" in line and re.search(r"type=.error", line)]
    return []  # poezio logs no stanzas unless run with a debug file

