"""The identity book: the local identities in the key file, their passphrase and
their prekeys.

It owns the ``Keystore``. Changes a person makes (create, rename, delete,
passphrase) are written at once; changes that arrive with envelopes (a contact's
new prekey or endpoint) go through ``save_soon``, which coalesces a burst into
one write and does the fsync in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import unicodedata
from collections.abc import Callable

from bridge.core import crypto
from bridge.core.checks import MAX_TTL
from bridge.core.errors import UserError
from bridge.core.handshake import HybridPrekey, make_hybrid_prekey
from bridge.core.identity import PREKEY_LIFETIME, Identity, SignedPrekey, make_prekey
from bridge.events import EventBus, IdentitiesChanged, IdentityInfo
from bridge.store import transfer
from bridge.store.keystore import HybridPrekeyRecord, IdentityRecord, Keystore, PrekeyRecord
from bridge.tasks import TaskSet

MAX_CLIENT_STORAGE = 64 * 1024  # bytes of clients' private storage per identity
MAX_CLIENT_ITEMS = 32  # elements of it per identity
MAX_PEP_STORAGE = 256 * 1024  # bytes of PEP nodes (bookmarks, avatar) per identity
MAX_PEP_NODES = 32  # PEP nodes per identity
RESERVED_USERNAMES = frozenset({"paranoim", "admin", "root"})
_USERNAME_RE = re.compile(r"[^a-z0-9._-]+")


class UnknownIdentityError(UserError):
    pass


class ClientStorageFullError(UserError):
    pass


def check_nick(nick: str) -> str:
    nick = " ".join(nick.split())
    if not nick:
        raise UserError("give the identity a nickname (it is only shown to you)")
    if len(nick) > 64:
        raise UserError("a nickname has at most 64 characters")
    return nick


class IdentityBook:
    def __init__(self, keystore: Keystore, bus: EventBus, clock: Callable[[], int],
                 tasks: TaskSet, on_change: Callable[[], None]) -> None:
        self.keystore = keystore
        self.bus = bus
        self.clock = clock
        self.tasks = tasks
        self.on_change = on_change  # the set of keys to watch changed
        # Derived keys by seed, so no hot path re-derives them; an entry leaves with
        # its identity, so a deleted identity's secret is referenced nowhere here.
        self._keys: dict[str, Identity] = {}
        # Signed hybrid prekeys made from their records, by a hash of the record's
        # X25519 secret (never the secret itself); emptied when an identity goes.
        self._hybrids: dict[bytes, HybridPrekey] = {}
        self._dirty = False
        self._saving: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._late = False  # a change that may wait a moment (save_within)
        self._later: asyncio.Task[None] | None = None

    # --- records ------------------------------------------------------------------

    def records(self) -> list[IdentityRecord]:
        return self.keystore.doc.identities

    def ident(self, rec: IdentityRecord) -> Identity:
        ident = self._keys.get(rec.seed)
        if ident is None:
            ident = self._keys[rec.seed] = Identity.from_seed(bytes.fromhex(rec.seed))
        return ident

    def rec(self, address: str) -> IdentityRecord:
        for rec in self.records():
            if self.ident(rec).address == address:
                return rec
        raise UnknownIdentityError(f"there is no local identity {address}")

    def info(self, rec: IdentityRecord) -> IdentityInfo:
        ident = self.ident(rec)
        return IdentityInfo(address=ident.address, nick=rec.nick, username=rec.username,
                            xmpp_password=rec.xmpp_password, fingerprint=ident.fingerprint,
                            created_at=rec.created_at)

    def identities(self) -> list[IdentityInfo]:
        return [self.info(r) for r in self.records()]

    def identity(self, address: str) -> IdentityInfo:
        return self.info(self.rec(address))

    def identity_by_username(self, username: str) -> IdentityInfo | None:
        for rec in self.records():
            if rec.username == username.lower():
                return self.info(rec)
        return None

    def check_login(self, username: str, password: str) -> IdentityInfo | None:
        found = self.identity_by_username(username)
        expected = found.xmpp_password if found else secrets.token_urlsafe(18)
        ok = crypto.equal(password.encode("utf-8"), expected.encode("utf-8"))
        return found if ok and found else None

    # --- changes a person makes ---------------------------------------------------------

    def _username_for(self, nick: str) -> str:
        # "Zoë Test" -> "zoe.test": accents folded, not dropped; anything else
        # outside a JID-safe ASCII set removed.
        folded = unicodedata.normalize("NFKD", nick).encode("ascii", "ignore").decode()
        base = _USERNAME_RE.sub("", folded.lower().replace(" ", "."))[:24].strip(".-_") or "me"
        taken = {r.username for r in self.records()} | RESERVED_USERNAMES
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        return name

    def add_seed(self, seed: bytes, nick: str) -> IdentityRecord:
        nick = check_nick(nick)
        address = Identity.from_seed(seed).address
        if any(i.address == address for i in self.identities()):
            raise UserError("this identity is already here")
        rec = IdentityRecord(seed=seed.hex(), nick=nick, username=self._username_for(nick),
                             xmpp_password=secrets.token_urlsafe(18), created_at=self.clock())
        self.rotate_prekeys(rec)
        self.records().append(rec)
        self.keystore.save()
        self.on_change()
        self.bus.emit(IdentitiesChanged(identity=self.info(rec)))
        return rec

    def rename(self, address: str, nick: str) -> IdentityInfo:
        rec = self.rec(address)
        rec.nick = check_nick(nick)
        self.keystore.save()
        info = self.info(rec)
        self.bus.emit(IdentitiesChanged(identity=info))
        return info

    def delete(self, address: str) -> None:
        rec = self.rec(address)
        self.records().remove(rec)
        self._keys.pop(rec.seed, None)
        self._hybrids = {}
        self.keystore.save()
        self.on_change()
        self.bus.emit(IdentitiesChanged(removed=address))

    async def export(self, address: str, passphrase: str) -> bytes:
        rec = self.rec(address)
        # Argon2id takes about a second and 256 MiB: never on the event loop.
        return await asyncio.to_thread(transfer.export_identity, rec, passphrase)

    async def read_import(self, data: bytes, passphrase: str) -> tuple[bytes, str]:
        return await asyncio.to_thread(transfer.import_identity, data, passphrase)

    def set_passphrase(self, passphrase: str | None) -> None:
        self.keystore.change_passphrase(passphrase)

    def keys_encrypted(self) -> bool:
        return bool(self.keystore.passphrase)

    # --- what the identity's clients keep -----------------------------------------------

    def client_storage(self, owner: str) -> dict[str, str]:
        return dict(self.rec(owner).client_storage)

    def set_client_storage(self, owner: str, items: dict[str, str]) -> None:
        rec = self.rec(owner)
        merged = {**rec.client_storage, **items}
        size = sum(len(k.encode()) + len(v.encode()) for k, v in merged.items())
        if len(merged) > MAX_CLIENT_ITEMS or size > MAX_CLIENT_STORAGE:
            raise ClientStorageFullError(
                f"private storage is full for this identity (at most {MAX_CLIENT_ITEMS} "
                f"elements and {MAX_CLIENT_STORAGE // 1024} KiB)")
        rec.client_storage = merged
        self.save_soon()

    def pep_nodes(self, owner: str) -> dict[str, str]:
        return dict(self.rec(owner).pep)

    def set_pep_node(self, owner: str, node: str, value: str | None) -> None:
        rec = self.rec(owner)
        nodes = {k: v for k, v in rec.pep.items() if k != node}
        if value is not None:
            nodes[node] = value
        size = sum(len(k.encode()) + len(v.encode()) for k, v in nodes.items())
        if value is not None and (len(nodes) > MAX_PEP_NODES or size > MAX_PEP_STORAGE):
            raise ClientStorageFullError(
                f"PEP storage is full for this identity (at most {MAX_PEP_NODES} nodes "
                f"and {MAX_PEP_STORAGE // 1024} KiB)")
        rec.pep = nodes
        self.save_soon()

    # --- saving what envelopes change ----------------------------------------------------

    def save_soon(self) -> None:
        """Write the key file shortly, off the event loop; a burst of changes is one
        write. ``flush()`` waits for it."""
        self._dirty = True
        if self._saving is None or self._saving.done():
            self._saving = self.tasks.spawn(self._save_loop(), name="key file save")

    def save_within(self, seconds: float) -> None:
        """Write the key file within ``seconds``: for records whose loss in a crash
        costs little (what was shown), so a stream of them is one write, not one per
        burst. ``flush()`` writes it at once."""
        self._late = True
        if self._later is None or self._later.done():
            self._later = self.tasks.spawn(self._save_later(seconds), name="key file save")

    async def _save_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._late:
            self._late = False
            self.save_soon()

    async def _save_loop(self) -> None:
        while self._dirty:
            await asyncio.sleep(0)  # let the rest of this burst of changes in
            self._dirty = False
            # A write already in a thread finishes even if this task is cancelled
            # (stop): flush() waits for it, so nothing reads the file half-saved.
            self._writing = asyncio.ensure_future(self.keystore.save_async())
            await asyncio.shield(self._writing)

    async def flush(self) -> None:
        if self._late:
            self._late = False
            self.save_soon()
        if self._saving is not None and not self._saving.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._saving)
        if self._writing is not None and not self._writing.done():
            await asyncio.wait([self._writing])  # its error, if any, was reported
        if self._dirty:  # the save task was cancelled before it wrote
            self._dirty = False
            await self.keystore.save_async()

    # --- prekeys -----------------------------------------------------------------------

    def rotate_prekeys(self, rec: IdentityRecord) -> bool:
        """Keep a prekey (and a hybrid prekey) with at least half its life left; delete
        the secrets nothing still alive in the network can have been sealed to."""
        now = self.clock()
        before = (len(rec.prekeys), len(rec.hybrid_prekeys))
        rec.prekeys = [p for p in rec.prekeys if p.expires + MAX_TTL > now]
        rec.hybrid_prekeys = [p for p in rec.hybrid_prekeys if p.expires + MAX_TTL > now]
        changed = (len(rec.prekeys), len(rec.hybrid_prekeys)) != before
        if not rec.prekeys or max(p.expires for p in rec.prekeys) < now + PREKEY_LIFETIME // 2:
            rec.prekeys.append(PrekeyRecord(secret=secrets.token_bytes(32).hex(),
                                            expires=now + PREKEY_LIFETIME))
            changed = True
        if not rec.hybrid_prekeys or max(
                p.expires for p in rec.hybrid_prekeys) < now + PREKEY_LIFETIME // 2:
            rec.hybrid_prekeys.append(HybridPrekeyRecord(
                x25519=secrets.token_bytes(32).hex(), kem_seed=secrets.token_bytes(64).hex(),
                expires=now + PREKEY_LIFETIME))
            changed = True
        return changed

    def rotate_all(self) -> list[IdentityRecord]:
        """Rotate every identity's prekeys; the ones that changed, saved."""
        rotated = [rec for rec in self.records() if self.rotate_prekeys(rec)]
        if rotated:
            self.keystore.save()
        return rotated

    def current_prekey(self, rec: IdentityRecord) -> SignedPrekey:
        p = max(rec.prekeys, key=lambda p: p.expires)
        return make_prekey(self.ident(rec), bytes.fromhex(p.secret), p.expires)

    def live_prekeys(self, rec: IdentityRecord, limit: int = 4) -> tuple[SignedPrekey, ...]:
        now = self.clock()
        live = sorted((p for p in rec.prekeys if p.expires > now), key=lambda p: -p.expires)
        return tuple(make_prekey(self.ident(rec), bytes.fromhex(p.secret), p.expires)
                     for p in live[:limit])

    def _hybrid(self, rec: IdentityRecord, p: HybridPrekeyRecord) -> HybridPrekey:
        """The signed prekey of a record, made once (an ML-KEM key pair from its seed
        and a signature: a handshake lookup would otherwise pay both per prekey held)."""
        key = crypto.hash32(p.x25519.encode())
        made = self._hybrids.get(key)
        if made is None or made.expires != p.expires:
            if len(self._hybrids) >= 64:  # prekeys rotate weekly: drop what went
                held = {crypto.hash32(q.x25519.encode())
                        for r in self.records() for q in r.hybrid_prekeys}
                self._hybrids = {k: v for k, v in self._hybrids.items() if k in held}
            made = self._hybrids[key] = make_hybrid_prekey(
                self.ident(rec), bytes.fromhex(p.x25519), bytes.fromhex(p.kem_seed), p.expires)
        return made

    def live_hybrid_prekeys(self, rec: IdentityRecord, limit: int = 2) -> tuple[HybridPrekey, ...]:
        """The newest signed hybrid prekeys, for announcements (1288 bytes each)."""
        now = self.clock()
        live = sorted((p for p in rec.hybrid_prekeys if p.expires > now), key=lambda p: -p.expires)
        return tuple(self._hybrid(rec, p) for p in live[:limit])

    def hybrid_prekey(self, rec: IdentityRecord,
                      prekey_id: bytes) -> tuple[HybridPrekey, bytes, bytes] | None:
        """The hybrid prekey a handshake names, with its X25519 secret and ML-KEM seed,
        while its secrets are kept (expired ones too: a late handshake still opens)."""
        for p in rec.hybrid_prekeys:
            prekey = self._hybrid(rec, p)
            if crypto.equal(prekey.id, prekey_id):
                return prekey, bytes.fromhex(p.x25519), bytes.fromhex(p.kem_seed)
        return None

    def opening_keys(self, rec: IdentityRecord) -> list[bytes]:
        """The X25519 secrets a direct envelope for ``rec`` may be sealed to, newest
        prekey first, the identity key last."""
        return [bytes.fromhex(p.secret) for p in sorted(rec.prekeys, key=lambda p: -p.expires)
                ] + [self.ident(rec).x25519_secret]
