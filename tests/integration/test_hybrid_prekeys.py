"""Hybrid prekeys (X25519 + ML-KEM-768) kept in the key file beside version-1
prekeys: made, renewed at half their life, found by id for a late handshake, and
deleted once nothing sealed to them can still arrive (identities.py, keystore.py)."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.core.checks import MAX_TTL
from bridge.core.identity import PREKEY_LIFETIME
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import MAGIC_PLAIN, IdentityRecord, Keystore
from tests.nodes import SharedNode

T0 = 1_800_000_000


async def test_hybrid_prekeys_live_renew_and_go(tmp_path: Path) -> None:
    now = [T0]
    pool = WorkerPool(1)
    s = Service(Keystore(tmp_path), SharedNode(6), pool, base_bits=6, clock=lambda: now[0])
    try:
        await s.start()
        alice = await s.create_identity("Alice")
        rec = s.ids.rec(alice.address)
        s.ids.rotate_all()
        (first,) = s.ids.live_hybrid_prekeys(rec)
        first.verify(s.ids.ident(rec).public, now[0])
        assert first.expires == T0 + PREKEY_LIFETIME
        found = s.ids.hybrid_prekey(rec, first.id)
        assert found is not None and found[0] == first and len(found[2]) == 64
        assert s.ids.hybrid_prekey(rec, bytes(8)) is None

        now[0] += PREKEY_LIFETIME // 2 + 1  # past half its life: a new one beside it
        assert rec in s.ids.rotate_all()
        newest, older = s.ids.live_hybrid_prekeys(rec)
        assert older == first and newest.expires > first.expires

        now[0] = first.expires + 1  # expired, but a late handshake may still name it
        s.ids.rotate_all()
        assert s.ids.hybrid_prekey(rec, first.id) is not None
        assert first not in s.ids.live_hybrid_prekeys(rec)
        now[0] = first.expires + MAX_TTL + 1  # nothing sealed to it can arrive: gone
        s.ids.rotate_all()
        assert s.ids.hybrid_prekey(rec, first.id) is None
        await s.stop()

        again = Keystore(tmp_path).load()  # and it is all in the key file
        kept = again.identities[0].hybrid_prekeys
        assert [p.expires for p in kept] == [p.expires for p in rec.hybrid_prekeys]
    finally:
        pool.close()


def test_a_key_file_from_a_later_version_still_opens(tmp_path: Path) -> None:
    ks = Keystore(tmp_path)
    ks.load()
    ks.doc.identities.append(IdentityRecord("00" * 32, "Alice", "alice", "pw", 1))
    ks.save()
    doc = json.loads((tmp_path / "keys.pim").read_bytes()[len(MAGIC_PLAIN):])
    doc["identities"][0]["a field from later"] = {"x": 1}
    doc["identities"][0]["contacts"] = [{"address": "a", "petname": "b", "state": "accepted",
                                         "later": True}]
    (tmp_path / "keys.pim").write_bytes(MAGIC_PLAIN + json.dumps(doc).encode())
    loaded = Keystore(tmp_path).load()
    assert loaded.identities[0].nick == "Alice"
    assert loaded.identities[0].contacts[0].petname == "b"
