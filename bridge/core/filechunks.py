"""A file in pieces: the part of a direct message record with flag 32 (layout in
``bridge.core.records``, spec in docs/envelope.md §10).

A file sent to a contact travels as ``count`` chunk records, each in its own
envelope (in the contact's session like a chat message). Every chunk names the file
(a random 16-byte id), its size, its BLAKE3 hash, its name and media type, so any
one of them tells the recipient what it is collecting and how much; the data of
chunk ``index`` is bytes ``index * CHUNK_SIZE`` onwards, ``CHUNK_SIZE`` of them
except in the last. Everything is fixed by the size, so a chunk has one encoding:

    file id 16 ‖ hash 32 ‖ size u32 (1..MAX_FILE_SIZE) ‖ index u16 ‖ count u16 ‖
    name (short text, 1..64 bytes) ‖ media type (short text, 0..64 bytes, ASCII) ‖
    data (the rest: exactly the chunk's share of the file)
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

from bridge.core.acts import short, short_field
from bridge.core.errors import LocalProtocolError, MalformedError, NonCanonicalError
from bridge.core.reader import Reader

CHUNK_SIZE: Final = 60 * 1024  # data per chunk: one chunk record fills the 64 KiB bucket
MAX_FILE_SIZE: Final = 64 * 1024 * 1024  # the most a chunk may announce (daemons refuse less)
MAX_CHUNKS: Final = -(-MAX_FILE_SIZE // CHUNK_SIZE)  # 1093
FILE_ID_SIZE: Final = 16
HASH_SIZE: Final = 32
MAX_NAME: Final = 64
MAX_MEDIA_TYPE: Final = 64
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_FORBIDDEN_IN_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def chunk_count(size: int) -> int:
    return -(-size // CHUNK_SIZE)


def chunk_length(size: int, index: int) -> int:
    """How many bytes chunk ``index`` of a file of ``size`` bytes carries."""
    return min(CHUNK_SIZE, size - index * CHUNK_SIZE)


def check_name(name: str) -> None:
    """A file name travels as it is: no path separators or control characters."""
    if not name or _FORBIDDEN_IN_NAME.search(name) or name in (".", ".."):
        raise MalformedError("a file name is 1..64 bytes without '/', '\\' or control characters")


def check_media_type(media_type: str) -> None:
    if media_type and not _MEDIA_TYPE.fullmatch(media_type):
        raise MalformedError("a media type is empty or type/subtype in lowercase ASCII")


@dataclass(frozen=True, slots=True)
class FileChunk:
    file_id: bytes
    digest: bytes  # BLAKE3 of the whole file
    size: int
    index: int
    name: str
    media_type: str
    data: bytes

    @property
    def count(self) -> int:
        return chunk_count(self.size)

    def __post_init__(self) -> None:
        if len(self.file_id) != FILE_ID_SIZE or len(self.digest) != HASH_SIZE:
            raise LocalProtocolError("a file id is 16 bytes and its hash 32")
        if not 1 <= self.size <= MAX_FILE_SIZE or not 0 <= self.index < self.count:
            raise LocalProtocolError("file size or chunk index out of range")
        if len(self.data) != chunk_length(self.size, self.index):
            raise LocalProtocolError("a chunk carries exactly its share of the file")
        try:
            check_name(self.name)
            check_media_type(self.media_type)
        except MalformedError as exc:
            raise LocalProtocolError(str(exc)) from None

    def encode(self) -> bytes:
        return (self.file_id + self.digest
                + struct.pack(">IHH", self.size, self.index, self.count)
                + short(self.name, MAX_NAME) + short(self.media_type, MAX_MEDIA_TYPE)
                + self.data)

    @classmethod
    def parse(cls, r: Reader) -> FileChunk:
        """The rest of a record: cheap checks first, the data taken last."""
        file_id = r.take(FILE_ID_SIZE)
        digest = r.take(HASH_SIZE)
        size, index, count = struct.unpack(">IHH", r.take(8))
        if not 1 <= size <= MAX_FILE_SIZE:
            raise MalformedError(f"a file of {size} bytes (1..{MAX_FILE_SIZE})")
        if count != chunk_count(size):
            raise NonCanonicalError(f"a file of {size} bytes comes in {chunk_count(size)} "
                                    f"chunks, not {count}")
        if index >= count:
            raise MalformedError(f"chunk {index} of {count}")
        name = short_field(r, MAX_NAME)
        check_name(name)
        media_type = short_field(r, MAX_MEDIA_TYPE)
        check_media_type(media_type)
        data = r.rest()
        if len(data) != chunk_length(size, index):
            raise NonCanonicalError(f"chunk {index} carries {len(data)} bytes, not "
                                    f"{chunk_length(size, index)}")
        return cls(file_id, digest, size, index, name, media_type, data)


def split(file_id: bytes, digest: bytes, name: str, media_type: str,
          data: bytes) -> list[FileChunk]:
    """The file's chunks, in order."""
    return [FileChunk(file_id, digest, len(data), i, name, media_type,
                      data[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE])
            for i in range(chunk_count(len(data)))]
