"""The file store and its upload slots (``bridge.files``): encrypted at rest under
the key file's key in sqlite mode, RAM only and bounded in memory mode; slots
single-use, short-lived, bounded per identity, and a file over the limit refused
with the limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge import files as files_mod
from bridge.files import MAX_SLOTS, SLOT_LIFE, FileStore, UploadRefusedError, safe_name

KEY = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_files_at_rest_are_encrypted_and_read_back_with_the_key(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files", KEY)
    data = b"a very recognisable picture " * 100
    f = store.put("alice", "p.png", "image/png", data)
    written = list((tmp_path / "files").iterdir())
    assert [p.name for p in written] == [f"{f.token}.bin"]
    raw = written[0].read_bytes()
    assert b"recognisable" not in raw and b"p.png" not in raw and b"alice" not in raw
    assert oct(written[0].stat().st_mode & 0o777) == "0o600"
    again = FileStore(tmp_path / "files", KEY)  # after a restart
    got = again.get(f.token)
    assert got is not None and (got.owner, got.name, got.media_type, got.data) == (
        "alice", "p.png", "image/png", data)
    assert FileStore(tmp_path / "files", bytes(32)).get(f.token) is None  # another key
    assert again.get("../" + f.token) is None and again.get("") is None


def test_memory_mode_writes_nothing_and_forgets_the_oldest_past_its_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "MAX_RAM_BYTES", 1000)
    monkeypatch.chdir(tmp_path)
    store = FileStore(None, None)
    first = store.put("alice", "a", "", os.urandom(600))
    second = store.put("alice", "b", "", os.urandom(600))
    assert store.get(first.token) is None and store.get(second.token) == second
    assert list(tmp_path.iterdir()) == []


def test_a_slot_is_single_use_and_expires() -> None:
    clock = Clock()
    store = FileStore(None, None, clock=clock)
    store.base_url = "http://127.0.0.1:9"
    put, get = store.new_slot("alice", "dir/../x y.png", 10, "Image/PNG; q=1")
    assert put.startswith("http://127.0.0.1:9/upload/") and put.endswith("/x%20y.png")
    token = put.split("/")[4]
    slot = store.take_slot(token)
    assert slot is not None and (slot.owner, slot.name, slot.size, slot.media_type) == (
        "alice", "x y.png", 10, "image/png")
    assert get == f"http://127.0.0.1:9/file/{slot.get}/x%20y.png"
    assert store.take_slot(token) is None  # used
    put, _ = store.new_slot("alice", "x", 10, "")
    clock.now += SLOT_LIFE + 1
    assert store.take_slot(put.split("/")[4]) is None  # expired


def test_slots_are_refused_past_the_limits() -> None:
    store = FileStore(None, None, max_upload=1000)
    with pytest.raises(UploadRefusedError, match="off"):
        store.new_slot("alice", "x", 10, "")  # no listener runs
    store.base_url = "http://127.0.0.1:9"
    with pytest.raises(UploadRefusedError) as big:
        store.new_slot("alice", "x", 1001, "")
    assert big.value.limit == 1000 and "at most 1000 bytes" in str(big.value)
    with pytest.raises(UploadRefusedError):
        store.new_slot("alice", "x", 0, "")
    for _ in range(MAX_SLOTS):
        store.new_slot("alice", "x", 10, "")
    with pytest.raises(UploadRefusedError, match="waiting"):
        store.new_slot("alice", "x", 10, "")
    store.new_slot("bob", "x", 10, "")  # another identity's slots are its own


def test_only_our_own_urls_name_a_file() -> None:
    store = FileStore(None, None)
    store.base_url = "http://127.0.0.1:9"
    f = store.put("alice", "a b.png", "", b"x")
    assert store.token_of(store.url(f)) == f.token
    assert store.token_of(f"http://127.0.0.1:10/file/{f.token}/a.png") == ""
    assert store.token_of(f"http://127.0.0.1:9/file/{f.token}/a/b") == ""
    assert store.token_of("hello") == ""


def test_with_tls_the_https_url_and_its_plain_http_form_name_the_same_file() -> None:
    store = FileStore(None, None)
    store.base_url = "https://127.0.0.1:9"  # the listener answers both on one port
    f = store.put("alice", "a.png", "", b"x")
    assert store.url(f).startswith("https://127.0.0.1:9/file/")
    assert store.token_of(store.url(f)) == f.token
    assert store.token_of(store.url(f).replace("https://", "http://", 1)) == f.token
    assert store.token_of(f"https://127.0.0.1:10/file/{f.token}/a.png") == ""
    assert store.token_of(f"ftp://127.0.0.1:9/file/{f.token}/a.png") == ""


@pytest.mark.parametrize(("given", "kept"), [
    ("C:\\Users\\x\\photo.jpg", "photo.jpg"), ("..", "file"), ("", "file"),
    ("a\x00b\nc", "abc"), ("é" * 40, "é" * 32),
])
def test_client_file_names_are_made_safe(given: str, kept: str) -> None:
    assert safe_name(given) == kept
