"""File chunk records (flag 32, docs/envelope.md §10): the vectors read from the spec
alone, every refusal the spec lists, and the bounds that make one encoding."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import blake3
import pytest

from bridge.core import errors
from bridge.core.envelope import Kind
from bridge.core.errors import LocalProtocolError, NonCanonicalError
from bridge.core.filechunks import (
    CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_FILE_SIZE,
    FileChunk,
    chunk_count,
    split,
)
from bridge.core.records import DirectMessage, parse_record

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "vectors" / "stamped.json").read_text()
)["files"]


def _by_spec(record: bytes) -> dict[str, Any]:
    """The fields of a chunk record as docs/envelope.md §10 lays them out."""
    sent_at, flags, n = struct.unpack(">QBB", record[:10])
    pos = 10 + n
    msgid = record[10:pos].decode()
    file_id, digest = record[pos:pos + 16], record[pos + 16:pos + 48]
    size, index, count = struct.unpack(">IHH", record[pos + 48:pos + 56])
    pos += 56
    name = record[pos + 1:pos + 1 + record[pos]].decode()
    pos += 1 + record[pos]
    media = record[pos + 1:pos + 1 + record[pos]].decode()
    pos += 1 + record[pos]
    return {"sent_at": sent_at, "flags": flags, "msgid": msgid, "file_id": file_id,
            "digest": digest, "size": size, "index": index, "count": count, "name": name,
            "media": media, "data": record[pos:]}


def test_the_vectors_read_from_the_spec_alone() -> None:
    assert VECTORS["chunk_size"] == CHUNK_SIZE == 61440
    small, last = (bytes.fromhex(v["record"]) for v in VECTORS["records"])
    f = _by_spec(small)
    assert f["flags"] == 32 and f["msgid"] == "f-1"
    assert (f["size"], f["index"], f["count"]) == (12, 0, 1)
    assert (f["name"], f["media"], f["data"]) == ("hello.txt", "text/plain", b"hello, file\n")
    assert f["digest"] == blake3.blake3(f["data"]).digest()
    g = _by_spec(last)
    assert (g["size"], g["index"], g["count"], g["name"]) == (61441, 1, 2, "p.png")
    whole = (bytes(range(256)) * 241)[:61441]  # the file the vector names
    assert g["data"] == whole[61440:] and g["digest"] == blake3.blake3(whole).digest()
    for v in VECTORS["records"]:  # and the code reads and writes the same bytes
        raw = bytes.fromhex(v["record"])
        msg = parse_record(Kind.DIRECT, raw, version=2)
        assert isinstance(msg, DirectMessage) and msg.chunk is not None
        assert msg.encode() == raw and msg.chunk.digest.hex() == v["data_hash"]


@pytest.mark.parametrize("v", VECTORS["refused"], ids=lambda v: v["case"])
def test_refused_records(v: dict[str, str]) -> None:
    with pytest.raises(getattr(errors, v["error"])):
        parse_record(Kind.DIRECT, bytes.fromhex(v["record"]), version=2)


def test_a_file_splits_into_chunks_that_rebuild_it() -> None:
    data = bytes(range(256)) * 1000  # 256000 bytes: 4 full chunks and a part
    chunks = split(b"i" * 16, blake3.blake3(data).digest(), "a.bin", "", data)
    assert len(chunks) == chunk_count(len(data)) == 5
    assert [len(c.data) for c in chunks] == [CHUNK_SIZE] * 4 + [len(data) - 4 * CHUNK_SIZE]
    assert b"".join(c.data for c in chunks) == data
    for c in chunks:
        msg = DirectMessage(7, "", message_id="m", chunk=c)
        assert parse_record(Kind.DIRECT, msg.encode(), version=1) == msg


def test_a_full_chunk_fits_the_largest_bucket_with_a_session_handshake() -> None:
    from bridge.core.body import SESSION_OVERHEAD, max_payload
    from bridge.core.handshake import INIT_SIZE
    c = FileChunk(b"i" * 16, b"h" * 32, MAX_FILE_SIZE, 0, "n" * 64, "image/" + "p" * 58,
                  b"x" * CHUNK_SIZE)
    worst = DirectMessage(2**63, "", message_id="m" * 64, chunk=c).encode()
    assert len(worst) <= max_payload(SESSION_OVERHEAD + INIT_SIZE)
    assert c.count == MAX_CHUNKS == 1093


@pytest.mark.parametrize("kw", [
    {"text": "hi"}, {"receipt_wanted": True}, {"message_id": ""},
])
def test_a_chunk_carries_nothing_else(kw: dict[str, Any]) -> None:
    c = FileChunk(b"i" * 16, b"h" * 32, 1, 0, "a", "", b"x")
    args: dict[str, Any] = {"message_id": "m", **kw}
    with pytest.raises(LocalProtocolError):
        DirectMessage(1, args.pop("text", ""), chunk=c, **args)


@pytest.mark.parametrize("bad", [
    {"size": 0}, {"size": MAX_FILE_SIZE + 1}, {"index": 1}, {"data": b""},
    {"name": "../x"}, {"name": ""}, {"media_type": "Text/Plain"}, {"file_id": b"short"},
])
def test_the_encoder_refuses_what_the_parser_would(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"file_id": b"i" * 16, "digest": b"h" * 32, "size": 1, "index": 0,
                              "name": "a", "media_type": "", "data": b"x", **bad}
    with pytest.raises(LocalProtocolError):
        FileChunk(**fields)


def test_a_chunk_record_with_trailing_bytes_is_not_canonical() -> None:
    c = FileChunk(b"i" * 16, b"h" * 32, 3, 0, "a", "", b"xyz")
    raw = DirectMessage(1, "", message_id="m", chunk=c).encode()
    with pytest.raises(NonCanonicalError):
        parse_record(Kind.DIRECT, raw + b"!", version=2)
