"""The identity's PEP nodes in the key file: encrypted with the keys, read back after a
restart, absent from a key file an older daemon wrote (which still loads)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import KeyDocument, Keystore
from tests.nodes import SharedNode

BITS = 6
NODE = "urn:xmpp:bookmarks:1"
STATE = json.dumps({"access": "whitelist", "max": 256,
                    "items": [["secret-room@rooms.localhost", "<conference/>"]]})


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(2)
    yield p
    p.close()


async def test_pep_nodes_are_kept_with_the_keys_encrypted(tmp_path: Path,
                                                         pool: WorkerPool) -> None:
    node = SharedNode(BITS)
    keys = Keystore(tmp_path / "a", "a long passphrase", kdf_ops=1, kdf_mem=8192)
    a = Service(keys, node, pool, base_bits=BITS)
    await a.start()
    alice = await a.create_identity("Alice")
    bob = await a.create_identity("Bob")
    a.set_pep_node(alice.address, NODE, STATE)
    await a.stop()  # written by then
    assert b"secret-room" not in keys.path.read_bytes()
    again = Service(Keystore(tmp_path / "a", "a long passphrase"), node, pool, base_bits=BITS)
    await again.start()
    assert again.pep_nodes(alice.address) == {NODE: STATE}
    assert again.pep_nodes(bob.address) == {}
    await again.stop()


def test_a_key_file_from_before_pep_loads_with_no_nodes() -> None:
    doc = KeyDocument.from_json(json.dumps({"version": 1, "identities": [{
        "seed": "11" * 32, "nick": "Old", "username": "old", "xmpp_password": "pw",
        "created_at": 1}]}).encode())
    assert doc.identities[0].pep == {}
    written = json.loads(doc.to_json())
    assert written["identities"][0]["pep"] == {}
