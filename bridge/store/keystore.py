"""The key file: identities, their prekeys and contacts — the only state kept on
disk by default.

The file lives in a 0700 directory and is written 0600, atomically (temporary
file, fsync, rename, fsync of the directory), so a crash leaves either the old
or the new version, never a torn one. With a passphrase the whole document is
sealed with XSalsa20-Poly1305 under a key stretched by Argon2id (libsodium's
``pwhash``), so a thief of the laptop gets nothing without the passphrase.

On-disk framing (the document inside is JSON, local only, never on the wire):

    plain:      b"PIMK0\\n" ‖ JSON
    encrypted:  b"PIMK1\\n" ‖ salt[16] ‖ opslimit u32 ‖ memlimit u64 ‖ secretbox(JSON)

The record of envelopes already shown (``core.seenset``) lives beside it in
``seen.pim``, written the same way (atomically, 0600) but on its own: the key file is
written after every burst of arrivals (the sessions must be on disk before a message
is shown), the record only within ``service.SEEN_SAVE`` of a change, and at up to
1.3 MB it would otherwise make every one of those writes cost a pass over it:

    plain:      b"PIMS0\\n" ‖ seen-set
    encrypted:  b"PIMS1\\n" ‖ secretbox(seen-set), under the key file's key

Earlier versions kept it in the key file (``KeyDocument.seen``); it is moved out when
such a file is loaded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import struct
import tempfile
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from bridge.core.errors import UserError
from bridge.core.seenset import ENTRY, MAX_SEEN, SeenSet, SeenSetError

log = logging.getLogger(__name__)

MAGIC_PLAIN = b"PIMK0\n"
MAGIC_SEALED = b"PIMK1\n"
MAX_KEYFILE = 16 * 1024 * 1024
FILENAME = "keys.pim"
SEEN_FILENAME = "seen.pim"
SEEN_PLAIN = b"PIMS0\n"
SEEN_SEALED = b"PIMS1\n"
MAX_SEEN_FILE = len(SEEN_SEALED) + 1 + MAX_SEEN * ENTRY.size + 64
# The most key stretching a file may ask for (libsodium's "sensitive" level): a
# crafted file must not make the daemon spend gigabytes or minutes.
MAX_OPS = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
MAX_MEM = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE


class KeystoreError(UserError):
    pass


class WrongPassphraseError(KeystoreError):
    pass


class PassphraseNeededError(KeystoreError):
    pass


@dataclass
class PrekeyRecord:
    secret: str  # hex
    expires: int


@dataclass
class HybridPrekeyRecord:
    """A signed hybrid prekey's secrets (docs/sessions.md §3.1): X25519 and ML-KEM."""

    x25519: str  # hex of the X25519 secret
    kem_seed: str  # hex of the 64-byte ML-KEM-768 seed
    expires: int


@dataclass
class ContactRecord:
    address: str
    petname: str
    state: str  # ContactState value
    heard_from: bool = False  # they have written to us: they know us, pair tags are safe
    prekey: str = ""  # hex of their newest verified SignedPrekey
    endpoint: str = ""  # their direct-delivery endpoint, if announced
    announced_at: int = 0  # issued_at of the announcement the endpoint came from
    added_at: int = 0
    hybrid_prekey: str = ""  # hex of their newest verified signed hybrid prekey
    sessions: str = ""  # base64 of core.sessions.Peer.to_bytes(): our sessions with them
    session_note: str = ""  # the last reset or loss to tell the person of, with its time
    told: str = ""  # digest of the last announcement sent to them (bridge.announcing)


@dataclass
class IdentityRecord:
    seed: str  # hex
    nick: str
    username: str
    xmpp_password: str
    created_at: int
    prekeys: list[PrekeyRecord] = field(default_factory=list)
    hybrid_prekeys: list[HybridPrekeyRecord] = field(default_factory=list)
    contacts: list[ContactRecord] = field(default_factory=list)
    # What the identity's XMPP clients keep on the server (XEP-0049 private storage:
    # room bookmarks, roster notes), element name -> serialised element. Kept here so
    # it is encrypted with the keys and leaves with the identity.
    client_storage: dict[str, str] = field(default_factory=dict)
    # The identity's PEP nodes (XEP-0163: room bookmarks, its avatar), node name ->
    # JSON of the node's settings and items (``bridge.xmpp.pep``); kept as above.
    pep: dict[str, str] = field(default_factory=dict)
    # Private groups (``bridge.groups``): group id hex -> the latest signed state, hex
    # (``core.groups.GroupState``), at most 64; kept as above.
    groups: dict[str, str] = field(default_factory=dict)


@dataclass
class KeyDocument:
    identities: list[IdentityRecord] = field(default_factory=list)
    version: int = 1
    # Envelopes already shown (``core.seenset``), base64, as earlier versions kept
    # them: read once and moved to the seen file (``Keystore.seen_path``); never written.
    seen: str = ""
    # The key that seals the message archive on disk (``store.archive``), hex; made
    # the first time an archive is kept, and as safe as the rest of this file.
    archive_key: str = ""

    def to_json(self) -> bytes:
        # compact: the C encoder (an indent takes the pure-Python one, a tenth the speed)
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> KeyDocument:
        raw: dict[str, Any] = json.loads(data)
        if raw.get("version") != 1:
            raise KeystoreError(f"key file version {raw.get('version')} is not supported")
        idents = []
        for i in raw.get("identities", []):
            i = _known(IdentityRecord, i)
            i["prekeys"] = [PrekeyRecord(**_known(PrekeyRecord, p))
                            for p in i.get("prekeys", [])]
            i["hybrid_prekeys"] = [HybridPrekeyRecord(**_known(HybridPrekeyRecord, p))
                                   for p in i.get("hybrid_prekeys", [])]
            i["contacts"] = [ContactRecord(**_known(ContactRecord, c))
                             for c in i.get("contacts", [])]
            idents.append(IdentityRecord(**i))
        seen = raw.get("seen", "")
        archive_key = raw.get("archive_key", "")
        return cls(identities=idents, seen=seen if isinstance(seen, str) else "?",
                   archive_key=archive_key if isinstance(archive_key, str) else "")


def _known(cls: type, raw: object) -> dict[str, Any]:
    """The fields of ``cls`` in ``raw``. A field a later version added is skipped, so
    this version still opens the file (and the keys in it) after a downgrade; what
    that field held is gone at the next save."""
    if not isinstance(raw, dict):
        raise TypeError(f"a {cls.__name__} is not an object")
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def _kdf(passphrase: str, salt: bytes, ops: int, mem: int) -> bytes:
    key: bytes = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt, opslimit=ops, memlimit=mem
    )
    return key


@dataclass(frozen=True)
class SealKey:
    """A stretched passphrase with the parameters that made it (derived once:
    Argon2id is deliberately slow, and every save needs the key)."""

    key: bytes = field(repr=False)
    salt: bytes
    ops: int
    mem: int

    @classmethod
    def derive(
        cls,
        passphrase: str,
        *,
        ops: int | None = None,
        mem: int | None = None,
        salt: bytes | None = None,
    ) -> SealKey:
        ops = ops or nacl.pwhash.argon2id.OPSLIMIT_MODERATE
        mem = mem or nacl.pwhash.argon2id.MEMLIMIT_MODERATE
        salt = salt or nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        return cls(_kdf(passphrase, salt, ops, mem), salt, ops, mem)


def seal_document(plain: bytes, key: SealKey) -> bytes:
    box = nacl.secret.SecretBox(key.key)
    return (
        MAGIC_SEALED + key.salt + struct.pack(">IQ", key.ops, key.mem) + bytes(box.encrypt(plain))
    )


def open_document(data: bytes, passphrase: str | None) -> tuple[bytes, SealKey | None]:
    if data.startswith(MAGIC_PLAIN):
        return data[len(MAGIC_PLAIN) :], None
    if not data.startswith(MAGIC_SEALED):
        raise KeystoreError("this is not a ParanoIM key file")
    if not passphrase:
        raise PassphraseNeededError(
            "the keys are encrypted: give the passphrase (PARANOIM_PASSPHRASE or the prompt)"
        )
    head = len(MAGIC_SEALED)
    salt = data[head : head + 16]
    ops, mem = struct.unpack_from(">IQ", data, head + 16)
    # Bounds keep a crafted file from asking for absurd work or memory.
    if not (1 <= ops <= MAX_OPS and 8192 <= mem <= MAX_MEM):
        raise KeystoreError("the key file's key-stretching parameters are out of range")
    key = SealKey.derive(passphrase, ops=ops, mem=mem, salt=salt)
    box = nacl.secret.SecretBox(key.key)
    try:
        return bytes(box.decrypt(data[head + 28 :])), key
    except nacl.exceptions.CryptoError:
        raise WrongPassphraseError("wrong passphrase for the key file") from None


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Keystore:
    """Loads and saves the key document of one data directory."""

    def __init__(
        self,
        data_dir: Path,
        passphrase: str | None = None,
        *,
        kdf_ops: int | None = None,
        kdf_mem: int | None = None,
    ) -> None:
        self.path = Path(data_dir) / FILENAME
        self.seen_path = Path(data_dir) / SEEN_FILENAME
        self.passphrase = passphrase or None
        self._kdf = (kdf_ops, kdf_mem)
        self._key: SealKey | None = None
        self.doc = KeyDocument()
        self.seen = SeenSet()  # written to seen_path (save, save_seen_async)
        # Writes may run in a thread (save_async) while the loop saves again: each
        # encoding gets a number, and a write older than the last one written is dropped.
        self._write_lock = threading.Lock()
        self._encoded = 0
        self._written = 0
        self._seen_encoded = 0
        self._seen_written = 0

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def encrypted(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                return f.read(len(MAGIC_SEALED)) == MAGIC_SEALED
        except FileNotFoundError:
            return bool(self.passphrase)

    def load(self) -> KeyDocument:
        if not self.path.exists():
            self.doc = KeyDocument()
            self.seen.clear()
            return self.doc
        size = self.path.stat().st_size
        if size > MAX_KEYFILE:
            raise KeystoreError(f"{self.path} is {size} bytes: too large to be a key file")
        data = self.path.read_bytes()
        plain, self._key = open_document(data, self.passphrase)
        try:
            self.doc = KeyDocument.from_json(plain)
        except (ValueError, TypeError, KeyError) as exc:
            raise KeystoreError(f"{self.path} is damaged: {exc}") from None
        self._load_seen()
        return self.doc

    def _load_seen(self) -> None:
        """From the seen file, or an earlier version's key file (then moved out at
        once). A damaged record costs only duplicate suppression, never the keys."""
        legacy, self.doc.seen = self.doc.seen, ""
        try:
            if self.seen_path.exists():
                self.seen.load(self._open_seen())
                return
            self.seen.load(base64.b64decode(legacy, validate=True))
        except (binascii.Error, SeenSetError, KeystoreError, OSError) as exc:
            log.warning("the record of shown messages is unreadable (%s); starting it afresh",
                        exc)
            self.seen.clear()
            return
        if len(self.seen):
            self._write_seen(*self._encode_seen())

    def _open_seen(self) -> bytes:
        if self.seen_path.stat().st_size > MAX_SEEN_FILE:
            raise KeystoreError(f"{self.seen_path} is too large")
        data = self.seen_path.read_bytes()
        if data.startswith(SEEN_PLAIN):
            return data[len(SEEN_PLAIN):]
        if not data.startswith(SEEN_SEALED) or self._key is None:
            raise KeystoreError(f"{self.seen_path} is not sealed as the key file is")
        try:
            return bytes(nacl.secret.SecretBox(self._key.key).decrypt(data[len(SEEN_SEALED):]))
        except nacl.exceptions.CryptoError:
            raise KeystoreError(f"{self.seen_path} was sealed under another key") from None

    def save(self) -> None:
        """Write the document and the record of shown messages now (fsyncs: not for
        the event loop's hot paths)."""
        self._write(*self._encode())
        self._write_seen(*self._encode_seen())

    async def save_seen_async(self) -> None:
        """Write the record of shown messages as it is now, in a thread."""
        seq, data = self._encode_seen()
        await asyncio.to_thread(self._write_seen, seq, data)

    def _encode_seen(self) -> tuple[int, bytes]:
        plain = self.seen.to_bytes()
        key = self._sealing_key()
        data = (SEEN_SEALED + bytes(nacl.secret.SecretBox(key.key).encrypt(plain))
                if key is not None else SEEN_PLAIN + plain)
        self._seen_encoded += 1
        return self._seen_encoded, data

    def _write_seen(self, seq: int, data: bytes) -> None:
        with self._write_lock:
            if seq <= self._seen_written:
                return
            write_private(self.seen_path, data)
            self._seen_written = seq

    def _sealing_key(self) -> SealKey | None:
        if self.passphrase and self._key is None:
            self._key = SealKey.derive(self.passphrase, ops=self._kdf[0], mem=self._kdf[1])
        return self._key if self.passphrase else None

    async def save_async(self) -> None:
        """Encode the document as it is now, then write it in a thread."""
        seq, data = self._encode()
        await asyncio.to_thread(self._write, seq, data)

    def _encode(self) -> tuple[int, bytes]:
        plain = self.doc.to_json()
        key = self._sealing_key()
        data = seal_document(plain, key) if key is not None else MAGIC_PLAIN + plain
        if len(data) > MAX_KEYFILE:
            # Never write a file that load() would refuse: the person would be locked
            # out of every identity. The change stays in memory only, and says so.
            raise KeystoreError(f"the key file would be {len(data)} bytes, more than "
                                f"{MAX_KEYFILE}; the last change is not saved")
        self._encoded += 1
        return self._encoded, data

    def _write(self, seq: int, data: bytes) -> None:
        with self._write_lock:
            if seq <= self._written:
                return  # a newer encoding is already on disk
            write_private(self.path, data)
            self._written = seq

    def archive_key(self) -> bytes:
        """The archive's key, made (and saved) the first time it is asked for."""
        try:
            key = bytes.fromhex(self.doc.archive_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            key = nacl.utils.random(32)
            self.doc.archive_key = key.hex()
            self.save()
        return key

    def change_passphrase(self, new: str | None) -> None:
        self.passphrase = new or None
        self._key = None
        self.save()


class OnceKeystore(Keystore):
    """Loads once: a passphrase-sealed file costs a second of Argon2id per load, and
    the daemon loads it before starting anything (to fail fast on a wrong passphrase);
    the service's own ``load()`` then finds it loaded."""

    _loaded = False

    def load(self) -> KeyDocument:
        if not self._loaded:
            super().load()
            self._loaded = True
        return self.doc
