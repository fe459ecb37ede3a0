"""Two real ``paranoim run`` daemons and slixmpp clients logged in to them.

Used by the end-to-end tests (``test_e2e_xmpp*.py``). ``Daemon`` is one data dir
and sandbox driven through the real ``paranoim`` executable: identities and
contacts are made with ``paranoim id new`` / ``contact add``, the daemon is
``paranoim run`` on free ports (port 0, read back from ``runtime.json``) at PoW
difficulty 1 and can be stopped with SIGTERM and started again on the same data
dir. ``Client`` is a slixmpp ``ClientXMPP`` over STARTTLS that trusts exactly the
daemon's self-signed certificate and records every message and presence it is
sent, so a test can wait for one with a deadline and then check what else came.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from tests.interop.drivers._common import tail
from tests.util import free_tcp_port, skip_or_fail, wait_until

PARANOIM = Path(sys.executable).parent / "paranoim"
CONTACTS = "p2p.localhost"
BOT = "paranoim@localhost"
BLOCKING_NS = "urn:xmpp:blocking"
ROOM = "public@rooms.localhost"
DELAY_NS = "urn:xmpp:delay"
MUC_NS = "http://jabber.org/protocol/muc"


@dataclass(frozen=True, slots=True)
class Account:
    nick: str
    jid: str
    password: str
    address: str

    @property
    def contact_jid(self) -> str:
        """How this identity appears in the roster of someone on another daemon."""
        return f"{self.address}@{CONTACTS}"


class Daemon:
    """One sandbox (HOME, XDG dirs, config, data dir) and its ``paranoim`` process."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.root = root
        self.data_dir = root / "data"
        self.config = root / "paranoim.toml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text('[p2p]\nlisten = "127.0.0.1"\n')
        home = root / "home"
        self.env = {
            **os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(root / "run"), "PYTHONUNBUFFERED": "1",
        }
        for key in ("PARANOIM_PASSPHRASE", "PARANOIM_CONFIG", "PARANOIM_DATA_DIR", "DISPLAY",
                    "WAYLAND_DISPLAY"):
            self.env.pop(key, None)
        self.accounts: dict[str, Account] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.p2p_port = free_tcp_port()  # fixed, so a peer can be told before it starts
        self.log = root / "daemon.log"
        self.runs = 0

    def _argv(self, *args: str) -> list[str]:
        if not PARANOIM.exists():
            skip_or_fail(f"{PARANOIM} is missing: run `pip install -e .` in the venv")
        return [str(PARANOIM), "--config", str(self.config), "--data-dir", str(self.data_dir),
                *args]

    def cli(self, *args: str) -> str:
        """Run one ``paranoim`` command to its end; its stdout (fails on a non-zero exit)."""
        done = subprocess.run(self._argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"paranoim {' '.join(args)} exited with {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done.stdout

    def new_identity(self, nick: str) -> Account:
        out = self.cli("id", "new", nick)
        fields = dict(re.findall(r"^\s+(Address|JID|Password):\s+(\S+)", out, re.M))
        account = Account(nick, fields["JID"], fields["Password"], fields["Address"])
        self.accounts[nick] = account
        return account

    def add_contact(self, owner: str, contact: Account, name: str = "") -> None:
        self.cli("contact", "add", "--id", owner, contact.address, "--name", name or contact.nick)

    def contact_list(self, owner: str) -> list[tuple[str, str, str]]:
        """``paranoim contact list``: (petname, state, JID) per contact."""
        rows = []
        for line in self.cli("contact", "list", "--id", owner).splitlines():
            # petname (may hold spaces), padded columns, then the state and the JID
            found = re.match(r"^(.*?)\s+(\S+)\s+(\S+@\S+)$", line.rstrip())
            if found:
                rows.append((found[1].strip(), found[2], found[3]))
        return rows

    # --- the daemon process ----------------------------------------------------------

    def start(self, *extra: str, timeout: float = 60.0) -> Daemon:
        assert self.proc is None, f"daemon {self.name} already runs"
        self.runs += 1
        with open(self.log, "ab") as log:
            log.write(f"\n===== run {self.runs}: {' '.join(extra)} =====\n".encode())
            log.flush()
            self._log_start = self.log.stat().st_size
            self.proc = subprocess.Popen(
                self._argv("run", "--xmpp-port", "0", "--web-port", "0",
                           "--p2p-port", str(self.p2p_port), "--difficulty", "1", *extra),
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _poll(self._ready, timeout, f"daemon {self.name} ready", lambda: tail(self.log))
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon {self.name} exited with {self.proc.returncode}\n"
                                 f"{tail(self.log)}")
        with open(self.log, "rb") as f:
            f.seek(self._log_start)
            return b"Ready." in f.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the daemon with ``sig``; its exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"daemon {self.name} did not stop within {timeout:g}s\n"
                                 f"{tail(self.log)}") from None

    @property
    def runtime(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.data_dir / "runtime.json").read_text())
        return doc

    def port(self, which: str) -> int:
        return int(self.runtime["ports"][which])

    @property
    def p2p(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    @property
    def cert(self) -> Path:
        return self.data_dir / "xmpp-cert.pem"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


# Alice on A; Bob, Carol and Mallory on B. Alice and Bob, and Alice and Mallory, know
# each other; Carol is a stranger to Alice.
TEMPLATE_IDENTITIES = {"A": ("Alice",), "B": ("Bob", "Carol", "Mallory")}
TEMPLATE_CONTACTS: dict[str, dict[str, tuple[str, ...]]] = {
    "A": {"Alice": ("Bob", "Mallory")},
    "B": {"Bob": ("Alice",), "Mallory": ("Alice",)},
}
_templates: dict[Path, tuple[Daemon, Daemon]] = {}


def template(base: Path) -> tuple[Daemon, Daemon]:
    """Data dirs with the identities and contacts above, made once per test session
    with the real CLI (each command costs an interpreter start, about a second)."""
    if base not in _templates:
        a, b = Daemon(base / "template-a", "A"), Daemon(base / "template-b", "B")
        in_parallel(*[functools.partial(d.new_identity, n)
                      for d in (a, b) for n in TEMPLATE_IDENTITIES[d.name]])
        everyone = {**a.accounts, **b.accounts}

        def contacts(d: Daemon) -> None:
            for owner, names in TEMPLATE_CONTACTS[d.name].items():
                for name in names:
                    d.add_contact(owner, everyone[name])

        in_parallel(lambda: contacts(a), lambda: contacts(b))
        _templates[base] = (a, b)
    return _templates[base]


def pair_from_template(base: Path, root: Path) -> tuple[Daemon, Daemon]:
    """Two new sandboxes whose data dirs are copies of the template's (not started)."""
    made = []
    for source in template(base):
        daemon = Daemon(root / source.name.lower(), source.name)
        shutil.copytree(source.data_dir, daemon.data_dir)
        daemon.accounts = dict(source.accounts)
        made.append(daemon)
    return made[0], made[1]


def start_pair(a: Daemon, b: Daemon, *extra: str) -> None:
    """Start both daemons at once, B told to link to A (``--peer``)."""
    in_parallel(lambda: a.start(*extra), lambda: b.start("--peer", a.p2p, *extra))


def _poll(predicate: Callable[[], bool], timeout: float, what: str,
          on_timeout: Callable[[], str]) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g}s\n{on_timeout()}")
        time.sleep(0.05)


def in_parallel(*jobs: Callable[[], object]) -> None:
    """Run blocking jobs (CLI calls on different data dirs) at the same time."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


# --- the XMPP client ------------------------------------------------------------------


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records every message and presence it is sent."""

    def __init__(self, account: Account, daemon: Daemon, resource: str = "e2e") -> None:
        super().__init__(f"{account.jid}/{resource}", account.password)
        self.account = account
        self.daemon = daemon
        self.enable_direct_tls = False  # STARTTLS only, as the listener offers
        self.enable_starttls = True
        self.enable_plaintext = False
        self.ca_certs = daemon.cert  # trust exactly this daemon's self-signed certificate
        self.reconnect_max_attempts = 0
        # Subscription requests are answered by the test, never automatically.
        self.roster.auto_authorize = None  # type: ignore[assignment]  # None: ask
        self.roster.auto_subscribe = False
        for plugin in ("xep_0030", "xep_0199", "xep_0184", "xep_0191", "xep_0045",
                       "xep_0203"):
            self.register_plugin(plugin)
        self.plugin["xep_0184"].auto_ack = True  # Bob's side: ack what asks for it
        self.plugin["xep_0184"].auto_request = False
        self.messages: list[Any] = []  # slixmpp Message stanzas
        self.presences: list[Any] = []  # slixmpp Presence stanzas
        self.roster_pushes: list[Any] = []  # slixmpp Iq stanzas
        self._session = asyncio.Event()
        self._failed = ""
        self._closed = asyncio.Event()
        self.register_handler(Callback("record messages", StanzaPath("message"),
                                       self.messages.append))
        self.register_handler(Callback("record presences", StanzaPath("presence"),
                                       self.presences.append))
        self.register_handler(Callback("record roster pushes", StanzaPath("iq@type=set/roster"),
                                       self.roster_pushes.append))
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", self._on_failed_auth)
        self.add_event_handler("disconnected", lambda _e: self._closed.set())

    async def _on_session_start(self, _event: object) -> None:
        await self.get_roster(timeout=10)
        self.send_presence()
        self._session.set()

    def _on_failed_auth(self, _event: object) -> None:
        self._failed = "authentication failed"
        self._session.set()

    async def login(self, timeout: float = 20.0) -> Client:
        self._closed.clear()
        self.connect("127.0.0.1", self.daemon.port("xmpp"))
        try:
            await asyncio.wait_for(self._session.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.account.jid}: no session within {timeout:g}s\n"
                                 f"{tail(self.daemon.log)}") from None
        assert not self._failed, f"{self.account.jid}: {self._failed}"
        return self

    async def close(self, timeout: float = 5.0) -> None:
        if self.transport is None:
            return
        self.disconnect()
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            self.abort()

    # --- sending ---------------------------------------------------------------------

    def chat(self, to: str, text: str, *, receipt: bool = False, ident: str = "") -> str:
        """Send a chat message; its stanza id."""
        msg = self.make_message(mto=slixmpp.JID(to), mbody=text, mtype="chat")
        msg["id"] = ident or self.new_id()
        if receipt:
            msg["request_receipt"] = True
        msg.send()
        return str(msg["id"])

    async def roster_set(self, jid: str, name: str) -> slixmpp.Iq:
        """A roster set as a client's "add contact" dialog sends it; raises ``IqError``."""
        iq = self.make_iq_set()
        iq["roster"]["items"] = {jid: {"name": name, "subscription": "none", "groups": []}}
        result: slixmpp.Iq = await iq.send(timeout=30)  # type: ignore[no-untyped-call]
        return result

    async def bot(self, command: str, timeout: float = 20.0) -> str:
        """Send a command to the gateway bot; its answer."""
        before = len(self.from_(BOT))
        self.chat(BOT, command)
        await self.wait(lambda: len(self.from_(BOT)) > before, timeout,
                        f"the bot's answer to {command!r}")
        return str(self.from_(BOT)[before]["body"])

    async def peers(self) -> int:
        """The daemon's connected peers, as the bot's ``status`` reports them."""
        found = re.search(r"peers connected: (\d+)", await self.bot("status"))
        assert found, "the bot's status names the connected peers"
        return int(found[1])

    async def stored_envelopes(self) -> int:
        """The daemon's stored envelope count, as the bot's ``status`` reports it."""
        found = re.search(r"stored envelopes: (\d+)", await self.bot("status"))
        assert found, "the bot's status names the stored envelopes"
        return int(found[1])

    # --- what arrived ----------------------------------------------------------------

    def from_(self, jid: str, mtype: str | None = None) -> list[slixmpp.Message]:
        """Messages with a body from ``jid`` (bare, or a room occupant's full JID)."""
        return [m for m in self.messages if m["body"] and jid in (m["from"].bare, str(m["from"]))
                and (mtype is None or m["type"] == mtype)]

    def bodies(self, jid: str, mtype: str = "chat") -> list[str]:
        return [str(m["body"]) for m in self.from_(jid, mtype)]

    def errors(self) -> list[slixmpp.Message]:
        return [m for m in self.messages if m["type"] == "error"]

    def receipts(self, jid: str) -> list[str]:
        return [str(m["receipt"]) for m in self.messages
                if m["from"].bare == jid and m["receipt"]]

    async def wait(self, predicate: Callable[[], object] | Callable[[], Awaitable[object]],
                   timeout: float = 20.0, what: str = "") -> Any:
        """Wait until ``predicate()`` (sync or async) is truthy; its value."""
        try:
            return await wait_until(predicate, timeout, interval=0.01, message=what)
        except TimeoutError as exc:
            recent = [f"{m['type']} from {m['from']}: {str(m['body'])[:60]!r}"
                      for m in self.messages[-10:]]
            raise AssertionError(f"{self.account.nick}: {exc}\nlast messages: {recent}\n"
                                 f"daemon log:\n{tail(self.daemon.log)}") from None

    async def wait_body(self, jid: str, text: str, timeout: float = 20.0,
                        mtype: str = "chat") -> slixmpp.Message:
        def found() -> slixmpp.Message | None:
            return next((m for m in self.from_(jid, mtype) if m["body"] == text), None)

        got: slixmpp.Message = await self.wait(found, timeout, f"{text!r} from {jid}")
        return got

    async def ping_server(self) -> None:
        """A round trip to the listener: everything it sent before has been read."""
        await self.plugin["xep_0199"].ping(jid=slixmpp.JID("localhost"), timeout=10)


@contextlib.asynccontextmanager
async def logged_in(*clients: Client) -> Any:
    """Log clients in; close them however the block ends."""
    try:
        await asyncio.gather(*(c.login() for c in clients))
        yield clients
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def has_delay(msg: slixmpp.Message) -> bool:
    return msg.xml.find(f"{{{DELAY_NS}}}delay") is not None


__all__ = ["Account", "Client", "Daemon", "IqError", "has_delay", "in_parallel", "logged_in"]
