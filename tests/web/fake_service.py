"""TEST DOUBLE — an in-memory stand-in for ``bridge.service.Service``.

It implements ``bridge.api.ServiceAPI`` closely enough to drive the web UI in
tests: the same ``UserError`` subclasses for bad input (mistyped addresses, bad
checksums, unknown identities, invalid vanity prefixes, wrong passphrases), and a
vanity search that really runs — a thread generating random keys and testing
their addresses against the prefix, at a throttled rate so progress can be
watched. It has no network, no proof of work and no real cryptography: its
"export" is only obfuscated, its addresses use blake2b in place of the real
checksum. Never use it outside tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from nacl.signing import SigningKey

from bridge.core.address import BASE32_ALPHABET, decode_address, encode_address, fingerprint
from bridge.core.errors import PowCancelledError, UserError
from bridge.core.invite import Invite, encode_invite, parse_invite
from bridge.events import (
    ContactInfo,
    ContactsChanged,
    ContactState,
    Event,
    IdentitiesChanged,
    IdentityInfo,
    NodeHealth,
)

MAX_VANITY_PREFIX = 10


class UnknownIdentityError(UserError):
    pass


class UnknownContactError(UserError):
    pass


class VanityPrefixError(UserError):
    pass


class BadPassphraseError(UserError):
    pass


def public_of(seed: bytes) -> bytes:
    return SigningKey(seed).verify_key.encode()


@dataclass
class _Identity:
    info: IdentityInfo
    secret: bytes  # stands in for the private key; never shown by the UI
    contacts: dict[str, ContactInfo] = field(default_factory=dict)


@dataclass
class FakeProgress:
    attempts: int = 0
    rate: float = 0.0
    elapsed: float = 0.0
    expected_attempts: float = 1.0
    done: bool = False
    cancelled: bool = False
    error: str = ""
    address: str = ""


class FakeVanityJob:
    """Tries random keys in a thread, ``rate`` keys per second at most."""

    def __init__(self, service: FakeService, prefix: str, nick: str, rate: float) -> None:
        self.id = secrets.token_hex(8)
        self.prefix = prefix
        self.nick = nick
        self._service = service
        self._rate = rate
        self._lock = threading.Lock()
        self._progress = FakeProgress(expected_attempts=float(32 ** len(prefix)))
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._result: IdentityInfo | None = None
        self._thread = threading.Thread(target=self._run, name=f"vanity-{prefix}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        batch = max(1, int(self._rate / 20))
        while not self._stop.is_set():
            for _ in range(batch):
                secret = secrets.token_bytes(32)
                pubkey = public_of(secret)
                address = encode_address(pubkey)
                with self._lock:
                    self._progress.attempts += 1
                if address.startswith(self.prefix):
                    self._result = self._service._add_identity(self.nick, secret, pubkey)
                    with self._lock:
                        self._progress.done = True
                        self._progress.address = address
                        self._progress.elapsed = time.monotonic() - start
                    self._finished.set()
                    return
            elapsed = time.monotonic() - start
            with self._lock:
                self._progress.elapsed = elapsed
                self._progress.rate = self._progress.attempts / elapsed if elapsed else 0.0
            # throttle to the configured rate
            target = self._progress.attempts / self._rate
            if target > elapsed:
                self._stop.wait(target - elapsed)
        with self._lock:
            self._progress.cancelled = True
            self._progress.elapsed = time.monotonic() - start
        self._finished.set()

    def progress(self) -> FakeProgress:
        with self._lock:
            return replace(self._progress)

    def cancel(self) -> None:
        self._stop.set()

    async def wait(self) -> IdentityInfo:
        await asyncio.to_thread(self._finished.wait)
        if self._result is None:
            raise PowCancelledError("The vanity search was cancelled.")
        return self._result


class FakeService:
    """In-memory ServiceAPI. ``vanity_rate`` keys/s makes a 2-character prefix take seconds."""

    def __init__(self, *, vanity_rate: float = 400.0) -> None:
        self._identities: dict[str, _Identity] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._jobs: dict[str, FakeVanityJob] = {}
        self._lock = threading.RLock()
        self.vanity_rate = vanity_rate
        self.peers: dict[str, str] = {}
        self.recent_errors: list[str] = []
        self.xmpp_port = 5222
        self.fingerprint = ":".join(secrets.token_hex(1).upper() for _ in range(32))

    # --- helpers --------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _get(self, address: str) -> _Identity:
        ident = self._identities.get(address.strip().lower())
        if ident is None:
            raise UnknownIdentityError("There is no identity with that address on this computer.")
        return ident

    def _add_identity(self, nick: str, secret: bytes, pubkey: bytes) -> IdentityInfo:
        address = encode_address(pubkey)
        with self._lock:
            n = len(self._identities) + 1
            username = f"{nick.lower().replace(' ', '')[:12] or 'user'}{n}"
            info = IdentityInfo(
                address=address,
                nick=nick,
                username=username,
                xmpp_password=secrets.token_urlsafe(12),
                fingerprint=fingerprint(decode_address(address)),
                created_at=int(time.time()),
            )
            self._identities[address] = _Identity(info, secret)
        self._emit(IdentitiesChanged())
        return info

    @staticmethod
    def _check_nick(nick: str) -> str:
        nick = nick.strip()
        if not nick:
            raise UserError("A nickname cannot be empty.")
        if len(nick) > 64:
            raise UserError("A nickname has at most 64 characters.")
        return nick

    # --- identities -----------------------------------------------------------
    def identities(self) -> list[IdentityInfo]:
        return [i.info for i in self._identities.values()]

    def identity(self, address: str) -> IdentityInfo:
        return self._get(address).info

    def identity_by_username(self, username: str) -> IdentityInfo | None:
        return next(
            (i.info for i in self._identities.values() if i.info.username == username), None
        )

    async def create_identity(self, nick: str, *, vanity_prefix: str = "") -> IdentityInfo:
        nick = self._check_nick(nick)
        if vanity_prefix:
            return await self.start_vanity(vanity_prefix, nick).wait()
        secret = secrets.token_bytes(32)
        return self._add_identity(nick, secret, public_of(secret))

    def create_identity_now(self, nick: str) -> IdentityInfo:
        """Test hook: create_identity without an event loop (Playwright's sync API runs one)."""
        secret = secrets.token_bytes(32)
        return self._add_identity(self._check_nick(nick), secret, public_of(secret))

    def rename_identity(self, address: str, nick: str) -> IdentityInfo:
        ident = self._get(address)
        ident.info = replace(ident.info, nick=self._check_nick(nick))
        self._emit(IdentitiesChanged())
        return ident.info

    def delete_identity(self, address: str) -> None:
        ident = self._get(address)
        del self._identities[ident.info.address]
        self._emit(IdentitiesChanged())

    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        info = self.identity_by_username(username)
        if info and hmac.compare_digest(info.xmpp_password.encode(), password.encode()):
            return info
        return None

    def export_identity(self, address: str, passphrase: str) -> bytes:
        ident = self._get(address)
        if len(passphrase) < 8:
            raise BadPassphraseError("Choose a passphrase of at least 8 characters.")
        key = hashlib.sha256(passphrase.encode()).digest()
        body = json.dumps({"nick": ident.info.nick, "secret": ident.secret.hex()}).encode()
        masked = bytes(b ^ key[i % 32] for i, b in enumerate(body))
        tag = hmac.new(key, masked, "sha256").digest()
        return b"PARANOIM-TEST-EXPORT\n" + base64.b64encode(tag + masked) + b"\n"

    def import_identity(self, data: bytes, passphrase: str) -> IdentityInfo:
        head, _, rest = data.partition(b"\n")
        if head != b"PARANOIM-TEST-EXPORT":
            raise UserError("This is not a ParanoIM identity file.")
        try:
            blob = base64.b64decode(rest.strip(), validate=True)
        except ValueError:
            raise UserError("This identity file is damaged.") from None
        key = hashlib.sha256(passphrase.encode()).digest()
        tag, masked = blob[:32], blob[32:]
        if not hmac.compare_digest(tag, hmac.new(key, masked, "sha256").digest()):
            raise BadPassphraseError("Wrong passphrase for this identity file.")
        record = json.loads(bytes(b ^ key[i % 32] for i, b in enumerate(masked)))
        secret = bytes.fromhex(record["secret"])
        pubkey = public_of(secret)
        if encode_address(pubkey) in self._identities:
            raise UserError("This identity is already on this computer.")
        return self._add_identity(record["nick"], secret, pubkey)

    # --- vanity ---------------------------------------------------------------
    def _check_prefix(self, prefix: str) -> str:
        if not prefix:
            raise VanityPrefixError("Type the letters your address should start with.")
        bad = sorted({c for c in prefix if c not in BASE32_ALPHABET})
        if bad:
            raise VanityPrefixError(
                f"Addresses use only the letters a–z and the digits 2–7, so “{''.join(bad)}” "
                "cannot appear in one. Try 'o' for 0 and 'l' for 1."
            )
        if len(prefix) > MAX_VANITY_PREFIX:
            raise VanityPrefixError(
                f"A prefix of {len(prefix)} characters would take years; use at most "
                f"{MAX_VANITY_PREFIX}."
            )
        return prefix

    def vanity_estimate(self, prefix: str) -> tuple[float, float]:
        expected = float(32 ** len(self._check_prefix(prefix)))
        return expected, expected / self.vanity_rate

    def start_vanity(self, prefix: str, nick: str) -> FakeVanityJob:
        job = FakeVanityJob(
            self, self._check_prefix(prefix), self._check_nick(nick), self.vanity_rate
        )
        self._jobs[job.id] = job
        return job

    def vanity_job(self, job_id: str) -> FakeVanityJob | None:
        return self._jobs.get(job_id)

    # --- contacts -------------------------------------------------------------
    def contacts(self, owner: str) -> list[ContactInfo]:
        return list(self._get(owner).contacts.values())

    def _put_contact(self, owner: _Identity, contact: ContactInfo) -> ContactInfo:
        owner.contacts[contact.address] = contact
        self._emit(ContactsChanged(owner=owner.info.address, contact=contact))
        return contact

    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo:
        ident = self._get(owner)
        invite = parse_invite(link_or_address)  # BadInviteError says what is wrong
        address = invite.address
        petname = petname or invite.nick
        if address == ident.info.address:
            raise UserError("That is this identity's own address.")
        contact = ContactInfo(
            owner=ident.info.address,
            address=address,
            petname=petname.strip()[:64],
            state=ContactState.ACCEPTED,
            fingerprint=fingerprint(decode_address(address)),
        )
        return self._put_contact(ident, contact)

    def receive_request(self, owner: str, sender: str, petname: str = "") -> ContactInfo:
        """Test hook: a stranger wrote first, so their request waits for acceptance."""
        ident = self._get(owner)
        contact = ContactInfo(
            ident.info.address,
            sender,
            petname,
            ContactState.PENDING_IN,
            fingerprint(decode_address(sender)),
        )
        return self._put_contact(ident, contact)

    def _contact(self, owner: str, address: str) -> tuple[_Identity, ContactInfo]:
        ident = self._get(owner)
        contact = ident.contacts.get(address.strip().lower())
        if contact is None:
            raise UnknownContactError("That contact is not in this identity's list.")
        return ident, contact

    def accept_contact(self, owner: str, address: str) -> ContactInfo:
        ident, contact = self._contact(owner, address)
        return self._put_contact(ident, replace(contact, state=ContactState.ACCEPTED))

    def block_contact(self, owner: str, address: str) -> ContactInfo:
        ident, contact = self._contact(owner, address)
        return self._put_contact(ident, replace(contact, state=ContactState.BLOCKED))

    def remove_contact(self, owner: str, address: str) -> None:
        ident, contact = self._contact(owner, address)
        del ident.contacts[contact.address]
        self._emit(ContactsChanged(owner=ident.info.address, removed=contact.address))

    def invite_link(self, owner: str) -> str:
        info = self._get(owner).info
        return encode_invite(Invite(decode_address(info.address), nick=info.nick))

    # --- messaging (not used by the web UI) -----------------------------------
    async def send_message(
        self, owner: str, to: str, text: str, *, receipt: bool = True, message_id: str = ""
    ) -> bytes:
        self._get(owner)
        decode_address(to)
        return secrets.token_bytes(32)

    async def send_receipt(
        self, owner: str, to: str, envelope_ids: list[bytes], message_ids: list[str]
    ) -> None:
        self._get(owner)

    async def send_room_message(self, owner: str, room: str, text: str) -> bytes:
        self._get(owner)
        return secrets.token_bytes(32)

    # --- events, health, peers ----------------------------------------------
    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def health(self) -> NodeHealth:
        return NodeHealth(
            peers=[{"host_port": hp, "state": st} for hp, st in self.peers.items()],
            stored_envelopes=42,
            stored_bytes=42 * 2048,
            difficulty_bits=22,
            storage="memory",
            tor="off",
            recent_errors=list(self.recent_errors),
        )

    def add_peer(self, host_port: str) -> None:
        host, sep, port = host_port.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError("Type a peer as host:port, for example 192.0.2.7:45069.")
        self.peers[host_port.strip()] = "connecting"

    def remove_peer(self, host_port: str) -> None:
        if self.peers.pop(host_port.strip(), None) is None:
            raise UserError("That peer is not in the list.")

    def xmpp_settings(self) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.xmpp_port,
            "domain": "paranoim.localhost",
            "fingerprint": self.fingerprint,
            "tls": "STARTTLS",
        }

    def shutdown(self) -> None:
        for job in self._jobs.values():
            job.cancel()
