"""Files arriving from contacts: chunk records collected until the file is whole,
its BLAKE3 hash checked, then kept in the ``FileStore`` and shown to the identity's
clients as a message whose body is the local GET URL (with an XEP-0066 OOB URL).

Only accepted contacts' chunks are kept; a stranger's, a blocked or pending
contact's are dropped unread (a contact request never carries a file). What is
collected is in RAM only and bounded by the sizes the first chunk announces, so a
file that never completes costs at most its announced size, until it expires:

* a file is at most the daemon's own limit (``[xmpp] max_upload_mb``);
* per sender ``MAX_FILES_PER_SENDER`` (2) files at once, in all ``MAX_FILES`` (8)
  and ``MAX_BYTES`` (64 MiB) announced;
* a file not completed ``IDLE`` (1 hour) after its latest new chunk is dropped, and
  any file ``MAX_AGE`` (24 hours) after its first;
* a file completed is remembered (``MAX_DONE`` of them) so late copies of its
  chunks do not start it again.

With storage "sqlite" every chunk kept is also written to disk, encrypted as files
are (``FileStore.keep``), and a restarted daemon collects on from there (``load``);
in memory mode a restart forgets what was collected. A file completed is remembered
on disk too, with the envelope that completed it, until that envelope expires: the
inbox counts that envelope shown only once a client has the message, so after a
restart before then it comes again and the message is shown again, from the file kept.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.core import crypto
from bridge.core.errors import RemoteProtocolError
from bridge.core.filechunks import FileChunk
from bridge.core.reader import Reader
from bridge.core.records import DirectMessage
from bridge.events import MessageArrived
from bridge.files import FileStore

MAX_FILES_PER_SENDER = 2
MAX_FILES = 8
MAX_BYTES = 64 * 1024 * 1024
IDLE = 3600.0
MAX_AGE = 24 * 3600.0
MAX_DONE = 1024

Key = tuple[str, str, bytes]  # (identity, sender, file id)


@dataclass(slots=True)
class _Partial:
    first: FileChunk  # what every later chunk must agree with
    message_id: str
    started: float
    touched: float
    pieces: dict[int, bytes] = field(default_factory=dict)

    def agrees(self, chunk: FileChunk, message_id: str) -> bool:
        f = self.first
        return (chunk.digest, chunk.size, chunk.name, chunk.media_type, message_id) == (
            f.digest, f.size, f.name, f.media_type, self.message_id)


@dataclass(frozen=True, slots=True)
class _Done:
    envelope_id: bytes  # the envelope whose chunk completed the file
    token: str  # the file in the FileStore
    message_id: str
    sent_at_ms: int
    expiry: int  # the envelope's, unix seconds

    def encode(self, key: Key) -> bytes:
        return self.envelope_id + json.dumps({
            "me": key[0], "sender": key[1], "file": key[2].hex(), "token": self.token,
            "id": self.message_id, "sent": self.sent_at_ms, "expiry": self.expiry}).encode()


class FileAssembler:
    def __init__(self, files: FileStore, errors: Callable[[str], None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.files = files
        self.errors = errors
        self.clock = clock
        self.partial: OrderedDict[Key, _Partial] = OrderedDict()
        self.done: OrderedDict[Key, _Done] = OrderedDict()
        self.refused = 0  # chunks dropped: over a bound, disagreeing, or not a contact's

    def held_bytes(self) -> int:
        return sum(p.first.size for p in self.partial.values())

    def on_chunk(self, me: str, sender: str, accepted: bool, record: DirectMessage,
                 envelope_id: bytes, expiry: int) -> MessageArrived | None:
        """Take one chunk; the message to show when it completed a file."""
        if not accepted:
            self.refused += 1
            return None
        return self._add(me, sender, record, envelope_id, expiry, keep=True)

    def load(self) -> None:
        """Collect on from what a previous run kept (storage "sqlite")."""
        for name, blob in self.files.kept("done-"):
            try:
                j = json.loads(blob[32:])
                key = (str(j["me"]), str(j["sender"]), bytes.fromhex(j["file"]))
                done = _Done(blob[:32], str(j["token"]), str(j["id"]), int(j["sent"]),
                             int(j["expiry"]))
            except (ValueError, KeyError, TypeError):
                done = None
            if done is None or done.expiry <= time.time() or len(done.envelope_id) != 32:
                self.files.unkeep(name)
                continue
            self.done[key] = done
        for name, blob in self.files.kept("in-"):
            try:
                r = Reader(blob)
                me = r.take(r.u8()).decode()
                sender = r.take(r.u8()).decode()
                record = DirectMessage.parse(r.rest())
                if record.chunk is None:
                    raise ValueError("not a file chunk")
            except (RemoteProtocolError, ValueError):
                self.files.unkeep(name)
                continue
            self._add(me, sender, record, b"", 0, keep=False)

    @staticmethod
    def _name(key: Key) -> str:
        me, sender, file_id = key
        return "in-" + crypto.hash32(f"{me}\0{sender}\0".encode() + file_id).hex()[:32]

    def _add(self, me: str, sender: str, record: DirectMessage, envelope_id: bytes,
             expiry: int, *, keep: bool) -> MessageArrived | None:
        chunk = record.chunk
        assert chunk is not None
        key = (me, sender, chunk.file_id)
        if key in self.done:
            return self._again(key, envelope_id)
        if chunk.size > self.files.max_upload:
            self.refused += 1
            return None
        now = self.clock()
        self._expire(now)
        p = self.partial.get(key)
        if p is None:
            if not self._room_for(me, sender, chunk.size):
                self.refused += 1
                return None
            p = self.partial[key] = _Partial(chunk, record.message_id, now, now)
        elif not p.agrees(chunk, record.message_id):
            self.refused += 1
            return None
        if chunk.index in p.pieces:
            return None  # a copy (direct and gossip both delivered it)
        p.pieces[chunk.index] = chunk.data
        p.touched = now
        if len(p.pieces) < chunk.count:
            if keep and self.files.at_rest:
                self.files.keep(f"{self._name(key)}-{chunk.index:05d}",
                                bytes([len(me)]) + me.encode() + bytes([len(sender)])
                                + sender.encode() + record.encode())
            return None
        del self.partial[key]
        self.files.unkeep(self._name(key))
        data = b"".join(p.pieces[i] for i in range(chunk.count))
        if not crypto.equal(crypto.hash32(data), chunk.digest):
            self.errors(f"a file from {sender[:8]}… did not match its hash and was dropped")
            return None
        f = self.files.put(me, chunk.name, chunk.media_type, data, sender=sender)
        done = self.done[key] = _Done(envelope_id, f.token, p.message_id, record.sent_at_ms,
                                      expiry)
        if envelope_id and self.files.at_rest:
            self.files.keep("done-" + self._name(key)[3:], done.encode(key))
        while len(self.done) > MAX_DONE:
            old, _ = self.done.popitem(last=False)
            self.files.unkeep("done-" + self._name(old)[3:])
        return self._message(key, done)

    def _again(self, key: Key, envelope_id: bytes) -> MessageArrived | None:
        """A chunk of a file already whole: the message again only for the envelope that
        completed it (it comes again after a restart until a client had the message)."""
        done = self.done[key]
        if not envelope_id or envelope_id != done.envelope_id:
            return None
        return self._message(key, done)

    def _message(self, key: Key, done: _Done) -> MessageArrived | None:
        f = self.files.get(done.token)
        if f is None:
            return None
        url = self.files.url(f)
        return MessageArrived(to=key[0], sender=key[1], text=url, sent_at_ms=done.sent_at_ms,
                              envelope_id=done.envelope_id, receipt_wanted=False,
                              message_id=done.message_id, expiry=done.expiry, url=url)

    def _room_for(self, me: str, sender: str, size: int) -> bool:
        mine = sum(1 for k in self.partial if k[:2] == (me, sender))
        return (mine < MAX_FILES_PER_SENDER and len(self.partial) < MAX_FILES
                and self.held_bytes() + size <= MAX_BYTES)

    def _expire(self, now: float) -> None:
        for key, p in list(self.partial.items()):
            if now - p.touched > IDLE or now - p.started > MAX_AGE:
                del self.partial[key]
                self.files.unkeep(self._name(key))

    def forget_identity(self, address: str) -> None:
        for key in [k for k in self.partial if k[0] == address]:
            del self.partial[key]
            self.files.unkeep(self._name(key))
