"""Identity export files: one identity's seed and nickname, sealed with a passphrase.

The only form in which a private key ever leaves the daemon (the web UI offers
it as a download). Argon2id stretches the passphrase; XSalsa20-Poly1305 seals.

    b"PIMX1\\n" ‖ salt[16] ‖ opslimit u32 ‖ memlimit u64 ‖ secretbox(JSON {seed, nick})
"""

from __future__ import annotations

import json
import struct

import nacl.exceptions
import nacl.secret

from bridge.store.keystore import (
    MAX_MEM,
    MAX_OPS,
    IdentityRecord,
    KeystoreError,
    SealKey,
    WrongPassphraseError,
)

MAGIC = b"PIMX1\n"
MAX_EXPORT = 64 * 1024
MIN_PASSPHRASE = 8


def export_identity(rec: IdentityRecord, passphrase: str) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeystoreError(
            f"choose a passphrase of at least {MIN_PASSPHRASE} characters "
            "to protect the exported keys"
        )
    key = SealKey.derive(passphrase)
    plain = json.dumps({"seed": rec.seed, "nick": rec.nick}).encode()
    box = nacl.secret.SecretBox(key.key)
    return MAGIC + key.salt + struct.pack(">IQ", key.ops, key.mem) + bytes(box.encrypt(plain))


def import_identity(data: bytes, passphrase: str) -> tuple[bytes, str]:
    """(seed, nick) from an export file; a KeystoreError that says what is wrong."""
    if len(data) > MAX_EXPORT or not data.startswith(MAGIC):
        raise KeystoreError("this is not a ParanoIM identity export file")
    head = len(MAGIC)
    salt = data[head : head + 16]
    try:
        ops, mem = struct.unpack_from(">IQ", data, head + 16)
    except struct.error:
        raise KeystoreError("the identity file is cut short") from None
    if not (1 <= ops <= MAX_OPS and 8192 <= mem <= MAX_MEM):
        raise KeystoreError("the identity file's key-stretching parameters are out of range")
    key = SealKey.derive(passphrase, ops=ops, mem=mem, salt=salt)
    try:
        plain = nacl.secret.SecretBox(key.key).decrypt(data[head + 28 :])
    except nacl.exceptions.CryptoError:
        raise WrongPassphraseError("wrong passphrase for this identity file") from None
    try:
        doc = json.loads(plain)
        seed = bytes.fromhex(doc["seed"])
        nick = str(doc["nick"])
    except (ValueError, KeyError, TypeError):
        raise KeystoreError("the identity file is damaged") from None
    if len(seed) != 32:
        raise KeystoreError("the identity file is damaged")
    return seed, nick
