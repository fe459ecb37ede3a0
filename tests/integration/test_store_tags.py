"""The SQLite store's tag index: kept as envelopes come and go, rebuilt at open."""

from __future__ import annotations

import os

from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import make_envelope


def test_sqlite_tag_index_survives_reopen_and_follows_purge(tmp_path):
    path = str(tmp_path / "envelopes.db")
    t1, t2 = os.urandom(16), os.urandom(16)
    short, long_ = make_envelope(1000, tag=t1, ttl=100), make_envelope(1000, tag=t1, ttl=500)
    other = make_envelope(1000, tag=t2, ttl=500)
    store = SQLiteStore(path)
    for e in (short, long_, other):
        assert store.add(e, 1000)
    assert sorted(store.tags.ids([t1])) == sorted([short.id, long_.id])
    store.close()
    store = SQLiteStore(path)
    assert sorted(store.tags.ids([t1, t2])) == sorted([short.id, long_.id, other.id])
    assert store.purge(1200) == 1
    assert store.tags.ids([t1]) == [long_.id]
    store.close()
