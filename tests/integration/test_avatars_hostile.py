"""Contacts' avatars against hostile senders: what a contact (or a stranger) can make
a daemon keep is one checked picture per contact, bounded in size, kind and rate.
The avatar book (``bridge.avatarbook``) on its own, then the real service's inbox
over an in-process node, then kept sealed at rest (storage "sqlite")."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.avatarbook import AVATAR_TTL, CHANGES_PER_HOUR, MAX_PARTIAL, AvatarBook, Picture
from bridge.core import crypto
from bridge.core.avatar import MAX_AVATAR
from bridge.core.errors import NonCanonicalError, UserError
from bridge.core.filechunks import CHUNK_SIZE, FileChunk, split
from bridge.core.records import DirectMessage
from bridge.events import ContactAvatarChanged, Event, MessageArrived
from bridge.files import FileStore
from bridge.localnode import LocalNode
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.integration.pep_support import png
from tests.util import wait_until

ME = "me"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chunks_of(data: bytes, media_type: str = "image/png", *, digest: bytes = b"",
              ) -> list[FileChunk]:
    return split(os.urandom(16), digest or crypto.hash32(data), "avatar", media_type, data)


def record(chunk: FileChunk, sha1: str) -> DirectMessage:
    return DirectMessage(1, "", message_id=sha1, chunk=chunk, avatar=True)


def sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class Book:
    """An avatar book with no network: what it emits and reports."""

    def __init__(self, files: FileStore | None = None) -> None:
        self.events: list[Event] = []
        self.errors: list[str] = []
        self.clock = Clock()
        self.book = AvatarBook(None, None, files or FileStore(None, None), None,  # type: ignore[arg-type]
                               self.events.append, self.errors.append, share=False,
                               monotonic=self.clock)

    def give(self, sender: str, data: bytes, *, accepted: bool = True,
             media_type: str = "image/png", sha1: str = "", digest: bytes = b"") -> None:
        for chunk in chunks_of(data, media_type, digest=digest):
            self.book.on_chunk(ME, sender, accepted, record(chunk, sha1 or sha(data)))


def test_a_contacts_picture_is_kept_and_told_once() -> None:
    b = Book()
    picture = png(4, 4, pad=CHUNK_SIZE + 10)  # two chunks
    b.give("bob", picture)
    assert b.book.current(ME, "bob") == ("image/png", picture)
    assert b.events == [ContactAvatarChanged(ME, "bob", sha(picture), "image/png",
                                             len(picture))]
    b.give("bob", picture)  # the same again: nothing new
    assert len(b.events) == 1 and b.errors == [] and b.book.partial == {}


def test_a_strangers_or_pending_contacts_picture_is_never_kept() -> None:
    b = Book()
    b.give("carol", png(2, 2), accepted=False)
    assert b.book.kept == {} and b.book.partial == {} and b.events == []
    assert b.book.refused == 1


def test_too_large_or_not_a_picture_is_refused() -> None:
    b = Book()
    big = png(2, 2, pad=MAX_AVATAR)  # announced over the bound: not one byte kept
    [first, *_] = chunks_of(big)
    b.book.on_chunk(ME, "bob", True, record(first, sha(big)))
    assert b.book.partial == {} and b.book.refused == 1
    gif = b"GIF89a" + bytes(200)
    b.give("bob", gif, media_type="image/gif")  # a media type that is not PNG or JPEG
    assert b.book.partial == {} and b.book.refused == 2
    b.give("bob", gif)  # announced as PNG, but not one
    assert b.book.kept == {} and b.events == [] and b.book.refused == 3
    assert "PNG or a JPEG" in b.errors[-1]
    b.give("bob", png(3, 3), digest=bytes(32))  # a hash that does not match
    b.give("bob", png(3, 3), sha1="0" * 40)  # an SHA-1 that does not match
    assert b.book.kept == {} and b.book.refused == 5 and "hashes" in b.errors[-1]


def test_changes_per_contact_are_bounded() -> None:
    b = Book()
    for i in range(CHANGES_PER_HOUR + 3):
        b.give("bob", png(1, 1, pad=i + 1))
    assert len(b.events) == CHANGES_PER_HOUR and b.book.refused == 3
    b.clock.now += 3601
    b.give("bob", png(1, 1, pad=999))
    assert len(b.events) == CHANGES_PER_HOUR + 1 and len(b.book.kept) == 1


def test_pictures_being_collected_are_bounded() -> None:
    b = Book()
    for i in range(MAX_PARTIAL + 5):
        picture = png(1, 1, pad=CHUNK_SIZE + i)
        first = chunks_of(picture)[0]
        b.book.on_chunk(ME, f"c{i}", True, record(first, sha(picture)))
    assert len(b.book.partial) == MAX_PARTIAL and b.book.refused == 5
    b.clock.now += 3601  # idle ones lapse
    picture = png(1, 1, pad=CHUNK_SIZE)
    b.book.on_chunk(ME, "late", True, record(chunks_of(picture)[0], sha(picture)))
    assert list(b.book.partial) == [(ME, "late")]


def test_the_avatar_flag_has_one_encoding() -> None:
    picture = png(1, 1)
    r = record(chunks_of(picture)[0], sha(picture))
    raw = r.encode()
    assert raw[8] == 160 and DirectMessage.parse(raw) == r
    for flags in (128, 128 | 1, 32 | 128 | 64):
        with pytest.raises(NonCanonicalError):
            DirectMessage.parse(raw[:8] + bytes([flags]) + raw[9:])


# --- through the real service ------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


@pytest.fixture
async def service(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[Service]:
    real = Service(Keystore(tmp_path / "keys"), LocalNode(6), pool, base_bits=6)
    await real.start()
    yield real
    await real.stop()


async def test_the_service_sends_to_contacts_and_keeps_nothing_from_a_stranger(
        service: Service) -> None:
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    carol = (await service.create_identity("Carol")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    service.add_contact(carol, alice, "Alice")  # Alice does not know Carol
    told: list[ContactAvatarChanged] = []
    service.subscribe(lambda e: told.append(e) if isinstance(e, ContactAvatarChanged) else None)

    with pytest.raises(UserError, match="PNG or a JPEG"):
        service.share_avatar(alice, b"not a picture")
    with pytest.raises(UserError, match="bytes"):
        service.share_avatar(alice, png(1, 1, pad=MAX_AVATAR))
    service.share_avatar(carol, png(5, 5))  # to Alice, who never accepted Carol
    picture = png(6, 6, pad=CHUNK_SIZE)
    service.share_avatar(bob, picture)
    await wait_until(lambda: [e for e in told if e.to == alice], 20)
    assert service.contact_avatar(alice, bob) == ("image/png", picture)
    await wait_until(lambda: service.avatars.refused >= 1, 20)  # Carol's first chunk
    assert service.contact_avatar(alice, carol) is None
    assert (alice, carol) not in service.avatars.partial
    # The first picture kept from Bob is answered with Alice's own: she has none.
    assert service.contact_avatar(bob, alice) is None

    service.remove_contact(alice, bob)
    assert service.contact_avatar(alice, bob) is None


async def test_a_picture_is_confirmed_and_one_not_confirmed_goes_again(
        service: Service) -> None:
    alice = (await service.create_identity("Alice")).address
    bob = (await service.create_identity("Bob")).address
    service.add_contact(alice, bob, "Bob")
    service.add_contact(bob, alice, "Alice")
    picture = png(9, 9)
    service.share_avatar(bob, picture)
    book = service.avatars
    await wait_until(lambda: service.contact_avatar(alice, bob) is not None, 20)
    await wait_until(lambda: not book._sent, 20)  # Alice's daemon confirmed it
    sent = book.sent_chunks
    # As if it had left more than the chunks' hour ago and no confirmation came (Alice's
    # daemon was away): the next thing heard from her sends it again.
    book._sent[(bob, alice)] = (sha(picture), book.monotonic() - AVATAR_TTL - 1)
    await service.send_message(alice, bob, "back again", message_id="m")
    await wait_until(lambda: book.sent_chunks > sent and not book._sent, 20)
    assert service.contact_avatar(alice, bob) == ("image/png", picture)


async def test_with_sharing_off_the_picture_stays_home(tmp_path: Path,
                                                       pool: WorkerPool) -> None:
    service = Service(Keystore(tmp_path / "keys"), LocalNode(6), pool, base_bits=6,
                      share_avatar=False)
    await service.start()
    try:
        alice = (await service.create_identity("Alice")).address
        bob = (await service.create_identity("Bob")).address
        service.add_contact(alice, bob, "Bob")
        service.add_contact(bob, alice, "Alice")
        shown: list[MessageArrived] = []
        service.subscribe(lambda e: shown.append(e) if isinstance(e, MessageArrived) else None)
        service.share_avatar(bob, png(4, 4))
        await service.send_message(bob, alice, "after the picture", message_id="t")
        await wait_until(lambda: shown, 20)  # what was sent before it has arrived too
        assert service.avatars.sent_chunks == 0 and service.contact_avatar(alice, bob) is None
    finally:
        await service.stop()


async def test_contacts_pictures_are_sealed_at_rest(tmp_path: Path, pool: WorkerPool) -> None:
    key = os.urandom(32)
    files = FileStore(tmp_path / "files", key)
    ks = Keystore(tmp_path / "keys")
    first = Service(ks, LocalNode(6), pool, base_bits=6, files=files, storage="sqlite")
    await first.start()
    alice = (await first.create_identity("Alice")).address
    bob = (await first.create_identity("Bob")).address
    first.add_contact(alice, bob, "Bob")
    first.add_contact(bob, alice, "Alice")
    picture = Picture.of(png(7, 7, pad=500)).data
    first.share_avatar(bob, picture)
    await wait_until(lambda: first.contact_avatar(alice, bob) is not None, 20)
    await first.stop()
    stored = list((tmp_path / "files" / "transfers").glob("avatar-*"))
    assert len(stored) == 1 and picture[16:400] not in stored[0].read_bytes()

    again = Service(Keystore(tmp_path / "keys"), LocalNode(6), pool, base_bits=6,
                    files=FileStore(tmp_path / "files", key), storage="sqlite")
    await again.start()
    try:
        assert again.contact_avatar(alice, bob) == ("image/png", picture)
        again.block_contact(alice, bob)
        assert again.contact_avatar(alice, bob) is None
        assert not list((tmp_path / "files" / "transfers").glob("avatar-*"))
    finally:
        await again.stop()
