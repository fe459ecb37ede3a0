"""Files the identities' clients uploaded (XEP-0363) or contacts sent them, and the
upload slots that let a client put one.

Every file is known by an unguessable token (``secrets.token_urlsafe(24)``): the GET
URL ``http://127.0.0.1:PORT/file/TOKEN/NAME`` names it, and only the processes of
this machine can reach the listener (``bridge.fileserver``).

At rest (docs/xmpp-mapping.md, "Files and pictures"):

* storage "sqlite": each file is one file in ``DATA_DIR/files``, encrypted
  (XChaCha20-Poly1305, a random nonce per file, the token as associated data) under
  a key derived from the key file's archive key, name and media type inside the
  ciphertext; at most ``MAX_DISK_BYTES`` in all, the oldest removed first. They
  survive restarts, as the message archive does.
* storage "memory": in RAM only, at most ``MAX_RAM_BYTES`` in all, the oldest
  forgotten first; nothing is written to disk, and everything is gone at exit.

A slot is single-use and short-lived (``SLOT_LIFE``), at most ``MAX_SLOTS`` per
identity wait at once, and it fixes the size the PUT must have.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from bridge.core import crypto
from bridge.core.errors import DecryptionError, MalformedError, UserError
from bridge.core.filechunks import MAX_FILE_SIZE, check_media_type, check_name
from bridge.paths import ensure_private_dir
from bridge.store.keystore import write_private

DEFAULT_MAX_UPLOAD = 16 * 1024 * 1024  # bytes: the default of [xmpp] max_upload_mb
SLOT_LIFE = 300  # seconds a slot waits for its PUT
MAX_SLOTS = 16  # slots waiting per identity
MAX_RAM_BYTES = 128 * 1024 * 1024  # memory mode: all files together
MAX_DISK_BYTES = 1024 * 1024 * 1024  # sqlite mode: all files together
CTX_FILES = "ParanoIM 2026-12 files at rest"
_NONCE = 24
_STATE_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,80}")


class UploadRefusedError(UserError):
    """A slot cannot be given: too large, too many waiting, or a bad name."""

    def __init__(self, message: str, limit: int = 0) -> None:
        super().__init__(message)
        self.limit = limit  # set when the file is too large: the most accepted, bytes


@dataclass(frozen=True, slots=True)
class StoredFile:
    token: str
    owner: str  # the identity that uploaded it, or to which a contact sent it
    name: str
    media_type: str
    data: bytes
    sender: str = ""  # the contact who sent it ("" : uploaded by the owner's client)


@dataclass(frozen=True, slots=True)
class Slot:
    owner: str
    name: str
    size: int
    media_type: str
    expires: float
    get: str  # the token the file will have


def safe_name(name: str) -> str:
    """A client's file name as it may travel: the last path part, cut to 64 bytes."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()) or "file"
    raw = base.encode("utf-8")[:64]
    base = raw.decode("utf-8", "ignore") or "file"
    return "file" if base in (".", "..") else base


def safe_media_type(media_type: str) -> str:
    media_type = media_type.strip().lower().split(";", 1)[0].strip()
    try:
        check_media_type(media_type)
    except MalformedError:
        return ""
    return media_type if len(media_type) <= 64 else ""


class FileStore:
    def __init__(self, directory: Path | None, key: bytes | None, *,
                 max_upload: int = DEFAULT_MAX_UPLOAD,
                 clock: Callable[[], float] = time.time) -> None:
        """``directory`` and ``key`` for files at rest (sqlite mode); None: RAM only."""
        self.dir = directory
        self._key = crypto.derive(CTX_FILES, key) if key is not None else None
        self.max_upload = min(max_upload, MAX_FILE_SIZE)
        self.clock = clock
        self.base_url = ""  # https://127.0.0.1:PORT (http:// without TLS), set when it runs
        self.slots: dict[str, Slot] = {}
        self._ram: OrderedDict[str, StoredFile] = OrderedDict()
        self._ram_bytes = 0
        if self.dir is not None:
            ensure_private_dir(self.dir)

    # --- slots -------------------------------------------------------------------------

    def new_slot(self, owner: str, name: str, size: int, media_type: str) -> tuple[str, str]:
        """(put URL, get URL) for a file of ``size`` bytes; UploadRefusedError if not."""
        if not self.base_url or self.max_upload <= 0:
            raise UploadRefusedError("file upload is off on this daemon")
        if size > self.max_upload:
            raise UploadRefusedError(
                f"the file is {size} bytes; at most {self.max_upload} bytes "
                f"({self.max_upload // (1024 * 1024)} MiB) may be uploaded", self.max_upload)
        if size < 1:
            raise UploadRefusedError("an empty file cannot be uploaded")
        now = self.clock()
        self.slots = {t: s for t, s in self.slots.items() if s.expires > now}
        if sum(1 for s in self.slots.values() if s.owner == owner) >= MAX_SLOTS:
            raise UploadRefusedError(f"{MAX_SLOTS} uploads are already waiting; finish them")
        name = safe_name(name)
        put, get = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.slots[put] = Slot(owner, name, size, safe_media_type(media_type), now + SLOT_LIFE,
                               get)
        return (f"{self.base_url}/upload/{put}/{quote(name)}",
                f"{self.base_url}/file/{get}/{quote(name)}")

    def take_slot(self, put: str) -> Slot | None:
        """The slot of a PUT, gone from now on (single use); None if none or expired."""
        slot = self.slots.pop(put, None)
        if slot is None or slot.expires <= self.clock():
            return None
        return slot

    # --- files -------------------------------------------------------------------------

    def url(self, f: StoredFile) -> str:
        return f"{self.base_url}/file/{f.token}/{quote(f.name)}"

    def token_of(self, url: str) -> str:
        """The token of one of our GET URLs; "" for anything else."""
        if not self.base_url:
            return ""
        plain = self.base_url.replace("https://", "http://", 1)  # the listener speaks both
        if not url.startswith((self.base_url + "/file/", plain + "/file/")):
            return ""
        parts = urlsplit(url).path.split("/")
        return unquote(parts[2]) if len(parts) == 4 else ""

    def put(self, owner: str, name: str, media_type: str, data: bytes, *, sender: str = "",
            token: str = "") -> StoredFile:
        check_name(name)
        f = StoredFile(token or secrets.token_urlsafe(24), owner, name, media_type,
                       bytes(data), sender)
        if self.dir is None:
            self._ram[f.token] = f
            self._ram_bytes += len(f.data)
            while self._ram_bytes > MAX_RAM_BYTES and len(self._ram) > 1:
                _, old = self._ram.popitem(last=False)
                self._ram_bytes -= len(old.data)
            return f
        assert self._key is not None
        meta = json.dumps({"owner": owner, "name": name, "type": media_type,
                           "sender": sender}).encode()
        nonce = secrets.token_bytes(_NONCE)
        plain = len(meta).to_bytes(2, "big") + meta + f.data
        write_private(self._path(f.token),
                      nonce + crypto.aead_encrypt(self._key, nonce, plain, f.token.encode()))
        self._trim()
        return f

    def get(self, token: str) -> StoredFile | None:
        if self.dir is None:
            return self._ram.get(token)
        assert self._key is not None
        path = self._path(token)
        try:
            raw = path.read_bytes() if path is not None else b""
        except OSError:
            return None
        if len(raw) < _NONCE + 2:
            return None
        try:
            plain = crypto.aead_decrypt(self._key, raw[:_NONCE], raw[_NONCE:], token.encode())
        except DecryptionError:
            return None
        n = int.from_bytes(plain[:2], "big")
        meta = json.loads(plain[2:2 + n])
        return StoredFile(token, meta["owner"], meta["name"], meta["type"], plain[2 + n:],
                          meta.get("sender", ""))

    def _path(self, token: str) -> Path:
        assert self.dir is not None
        if not token or not all(c.isalnum() or c in "-_" for c in token) or len(token) > 64:
            return self.dir / "-invalid-"  # never a file we wrote
        return self.dir / f"{token}.bin"

    def _trim(self) -> None:
        assert self.dir is not None
        entries = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in self.dir.glob("*.bin"))
        total = sum(size for _, size, _ in entries)
        for _, size, p in entries[:-1]:
            if total <= MAX_DISK_BYTES:
                break
            p.unlink(missing_ok=True)
            total -= size

    # --- what transfers keep across a restart (storage "sqlite" only) ---------------------

    @property
    def at_rest(self) -> bool:
        return self.dir is not None

    def _state(self, name: str) -> Path:
        assert self.dir is not None
        if not _STATE_NAME.fullmatch(name):
            raise ValueError(f"not a state name: {name!r}")
        return ensure_private_dir(self.dir / "transfers") / name

    def keep(self, name: str, data: bytes) -> None:
        """Keep ``data`` under ``name``, encrypted as files are; nothing in memory mode."""
        if self.dir is None:
            return
        assert self._key is not None
        nonce = secrets.token_bytes(_NONCE)
        write_private(self._state(name), nonce + crypto.aead_encrypt(
            self._key, nonce, data, b"state\0" + name.encode()))

    def kept(self, prefix: str) -> list[tuple[str, bytes]]:
        """What was kept under names starting with ``prefix``, by name; what does not
        open under the key is skipped."""
        if self.dir is None:
            return []
        assert self._key is not None
        out = []
        for path in sorted(self._state("x").parent.glob(f"{prefix}*")):
            raw = path.read_bytes()
            if len(raw) < _NONCE + 16:
                continue
            try:
                out.append((path.name, crypto.aead_decrypt(
                    self._key, raw[:_NONCE], raw[_NONCE:], b"state\0" + path.name.encode())))
            except (DecryptionError, ValueError):
                continue
        return out

    def unkeep(self, prefix: str) -> None:
        if self.dir is not None:
            for path in self._state("x").parent.glob(f"{prefix}*"):
                path.unlink(missing_ok=True)
