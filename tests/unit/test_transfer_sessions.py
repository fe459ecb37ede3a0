"""An identity export carries the seed and nick only (docs/invitations.md §3,
docs/sessions.md §11 item 7): never a contact's sessions, so an import cannot fork
them, nor prekey secrets, contacts or client storage."""

from __future__ import annotations

import base64
import json
import struct

import nacl.pwhash
import nacl.secret
import pytest

from bridge.core import kem
from bridge.core.handshake import initiate, make_hybrid_prekey
from bridge.core.identity import Identity
from bridge.core.sessions import Peer, begin, initiator_session
from bridge.store import transfer
from bridge.store.keystore import (
    ContactRecord,
    HybridPrekeyRecord,
    IdentityRecord,
    PrekeyRecord,
    SealKey,
)

NOW = 1_800_000_000
PASSPHRASE = "a long passphrase"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's key stretching at libsodium's minimum: the format is what is tested."""
    monkeypatch.setattr(nacl.pwhash.argon2id, "OPSLIMIT_MODERATE", 1)
    monkeypatch.setattr(nacl.pwhash.argon2id, "MEMLIMIT_MODERATE", 8192)


def _alice_with_a_session() -> tuple[IdentityRecord, str]:
    alice = Identity.from_seed(bytes([0xA1]) * 32)
    bob = Identity.from_seed(bytes([0xB0]) * 32)
    prekey = make_hybrid_prekey(bob, bytes(range(32)), bytes(range(64)), NOW + 86400)
    hs = initiate(identity=alice, responder=bob.public, prekey=prekey, one_time=None, now=NOW,
                  ephemeral_secret=bytes(range(1, 33)),
                  encapsulated=kem.encapsulate(prekey.kem))
    peer = begin(Peer(), initiator_session(hs, bytes(range(2, 34))), NOW)
    sessions = base64.b64encode(peer.to_bytes()).decode()
    rec = IdentityRecord(
        seed=(bytes([0xA1]) * 32).hex(), nick="Alice", username="alice",
        xmpp_password="pw", created_at=NOW,
        prekeys=[PrekeyRecord(secret="11" * 32, expires=NOW + 86400)],
        hybrid_prekeys=[HybridPrekeyRecord(x25519="22" * 32, kem_seed="33" * 64,
                                           expires=NOW + 86400)],
        contacts=[ContactRecord(address=bob.address, petname="Bob", state="accepted",
                                heard_from=True, hybrid_prekey=prekey.encode().hex(),
                                sessions=sessions)],
        client_storage={"storage:bookmarks": "<storage/>"})
    return rec, sessions


def test_export_holds_the_seed_and_nick_and_no_session() -> None:
    rec, sessions = _alice_with_a_session()
    data = transfer.export_identity(rec, PASSPHRASE)
    head = len(transfer.MAGIC)
    salt = data[head:head + 16]
    ops, mem = struct.unpack_from(">IQ", data, head + 16)
    key = SealKey.derive(PASSPHRASE, ops=ops, mem=mem, salt=salt)
    plain = nacl.secret.SecretBox(key.key).decrypt(data[head + 28:])
    assert json.loads(plain) == {"seed": rec.seed, "nick": "Alice"}
    for secret in (sessions, base64.b64decode(sessions).hex(), "11" * 32, "22" * 32, "33" * 64,
                   rec.contacts[0].address, "<storage/>"):
        assert secret.encode() not in plain


def test_import_gives_back_the_seed_and_nick_only() -> None:
    rec, _ = _alice_with_a_session()
    got = transfer.import_identity(transfer.export_identity(rec, PASSPHRASE), PASSPHRASE)
    assert got == (bytes.fromhex(rec.seed), "Alice")
