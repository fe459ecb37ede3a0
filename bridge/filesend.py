"""Files leaving for a contact: a client sent the GET URL of an upload (as the body,
or as an XEP-0066 OOB URL) to an accepted contact, and the file goes to the
contact's daemon in chunk records (``bridge.core.filechunks``), each a direct
message in the contact's session through the outbox: the contact's endpoint first,
gossip if it cannot be reached, every chunk stamped for its bucket (64 KiB) and
lifetime like a chat message.

Budgets, so that a file cannot flood the network:

* a file is at most ``FileStore.max_upload`` bytes (``[xmpp] max_upload_mb``, 16 MiB
  by default): at most 274 chunks;
* to one contact at most ``BYTES_PER_CONTACT_DAY`` (64 MiB) in any 24 hours, and at
  most ``MAX_WAITING_PER_CONTACT`` (4) files queued; ``MAX_WAITING`` (16) in all;
* one file at a time per contact, its chunks in order, ``WINDOW`` (4) stamped at once
  (a chat message written meanwhile leaves between two chunks, not after the file);
* each chunk lives ``CHUNK_TTL`` (1 hour) in the network: its proof of work is that of a
  64 KiB envelope living an hour (25 bits at the default base 18, about 3.4 s of one
  core), not two days (30 bits, 108 s). A contact whose daemon is unreachable for more
  than the hour the chunks live by gossip does not get the file; the sender's person is
  then told so (``bridge.fileacks``: the contact's daemon confirms each file kept).

What is refused is said to the client at once (a UserError); a file that fails once
queued is told to the identity's clients by the bot (a ``SessionNotice``). With storage "sqlite"
the files waiting, and how far each got, are kept (encrypted, ``FileStore.keep``) after
every chunk, and a restarted daemon goes on from the first chunk that had not left,
under the same file id, so the contact's daemon completes the file it began. In
memory mode a restart forgets them: the file must be sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bridge.contacts import ContactBook
from bridge.core import crypto
from bridge.core.errors import RemoteProtocolError, UserError
from bridge.core.filechunks import FILE_ID_SIZE, FileChunk, split
from bridge.files import FileStore
from bridge.outbox import Outbox
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

BYTES_PER_CONTACT_DAY = 64 * 1024 * 1024
DAY = 24 * 3600
MAX_WAITING_PER_CONTACT = 4
MAX_WAITING = 16
STATE = "outgoing"  # FileStore.keep name of the files waiting
CHUNK_TTL = 3600  # a chunk's life in the network: 25 bits for 64 KiB at base 18 (stamps.md)
WINDOW = 4  # chunks of one file stamped at once

Key = tuple[str, str]  # (owner, contact)


@dataclass(slots=True)
class _Job:
    token: str
    message_id: str
    file_id: bytes
    next: int = 0  # the first chunk that has not left

    def state(self, key: Key) -> dict[str, object]:
        return {"owner": key[0], "to": key[1], "token": self.token, "id": self.message_id,
                "file": self.file_id.hex(), "next": self.next}


class FileSender:
    def __init__(self, contacts: ContactBook, outbox: Outbox, files: FileStore,
                 tasks: TaskSet, errors: Callable[[str], None], *,
                 tell: Callable[[str, str, str], None] = lambda owner, to, text: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.contacts = contacts
        self.outbox = outbox
        self.files = files
        self.tasks = tasks
        self.errors = errors
        self.tell = tell  # (owner, contact, text): what the identity's clients are told
        self.monotonic = monotonic
        self.queues: dict[Key, deque[_Job]] = {}
        self.spent: dict[Key, deque[tuple[float, int]]] = {}  # (when, bytes) in 24 hours
        self.sent_chunks = 0
        # (owner, contact, message id): a file's last chunk left (bridge.fileacks)
        self.on_sent: Callable[[str, str, str], None] = lambda owner, to, message_id: None

    def send(self, owner: str, to: str, url: str, message_id: str = "") -> bool:
        """Queue the file behind ``url`` for ``to``; False when the URL names no file
        of ``owner`` (the text is then an ordinary message). UserError when refused."""
        token = self.files.token_of(url.strip())
        f = self.files.get(token) if token else None
        if f is None or f.owner != owner:
            return False
        if self.contacts.accepted(owner, to) is None:
            raise UserError("files go to accepted contacts only")
        key = (owner, to)
        queue = self.queues.setdefault(key, deque())
        if len(queue) >= MAX_WAITING_PER_CONTACT:
            raise UserError(f"{MAX_WAITING_PER_CONTACT} files already wait for this contact")
        if sum(len(q) for q in self.queues.values()) >= MAX_WAITING:
            raise UserError(f"{MAX_WAITING} files already wait to be sent")
        now = self.monotonic()
        spent = self.spent.setdefault(key, deque())
        while spent and spent[0][0] <= now - DAY:
            spent.popleft()
        used = sum(n for _, n in spent)
        if used + len(f.data) > BYTES_PER_CONTACT_DAY:
            raise UserError(f"at most {BYTES_PER_CONTACT_DAY // (1024 * 1024)} MiB of files go "
                            f"to one contact in 24 hours; {used // 1024} KiB went already")
        spent.append((now, len(f.data)))
        queue.append(_Job(token, (message_id or secrets.token_hex(8))[:64],
                          secrets.token_bytes(FILE_ID_SIZE)))
        self._save()
        if len(queue) == 1:
            self.tasks.spawn(self._drain(key), name="file")
        return True

    def resume(self) -> None:
        """Go on with what a previous run had not sent (storage "sqlite")."""
        for _, raw in self.files.kept(STATE):
            try:
                for j in json.loads(raw):
                    key = (str(j["owner"]), str(j["to"]))
                    job = _Job(str(j["token"]), str(j["id"])[:64], bytes.fromhex(j["file"]),
                               int(j["next"]))
                    if len(job.file_id) == FILE_ID_SIZE:
                        self.queues.setdefault(key, deque()).append(job)
            except (ValueError, KeyError, TypeError) as exc:
                self.errors(f"files waiting to be sent could not be read: {exc}")
        for key in self.queues:
            self.tasks.spawn(self._drain(key), name="file")

    def _save(self) -> None:
        if self.files.at_rest:
            self.files.keep(STATE, json.dumps(
                [job.state(key) for key, q in self.queues.items() for job in q]).encode())

    async def _drain(self, key: Key) -> None:
        queue = self.queues[key]
        try:
            while queue:
                job = queue[0]
                try:
                    await self._send_one(key, job)
                except Exception as exc:  # whatever it was, the person is told
                    if not isinstance(exc, (UserError, RemoteProtocolError)):
                        log.exception("a file to %s… failed", key[1][:8])
                    self.errors(f"a file to {key[1][:8]}… was not sent whole: {exc}")
                    self.tell(*key, f"A file you sent (message {job.message_id}) did not "
                              f"leave whole: {exc}. Send it again.")
                else:
                    self.on_sent(*key, job.message_id)
                queue.popleft()
                self._save()
        finally:
            if not queue:
                self.queues.pop(key, None)

    async def _settle(self, job: _Job, pending: set[asyncio.Task[None]],
                      done: set[int]) -> set[asyncio.Task[None]]:
        """Wait for one chunk to leave; keep how far the file got without a gap."""
        finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            task.result()  # a chunk that could not leave ends the file
        before = job.next
        while job.next in done:
            job.next += 1
        if job.next != before:
            self._save()
        return pending

    async def _send_one(self, key: Key, job: _Job) -> None:
        f = self.files.get(job.token)
        if f is None:
            raise UserError("the file is no longer kept")
        chunks = split(job.file_id, crypto.hash32(f.data), f.name, f.media_type, f.data)
        del f
        done: set[int] = set()

        async def one(chunk: FileChunk) -> None:
            await self.outbox.send_message(*key, "", receipt=False, message_id=job.message_id,
                                           chunk=chunk, ttl=CHUNK_TTL)
            done.add(chunk.index)
            self.sent_chunks += 1

        # WINDOW chunks are stamped at once; each takes its place in the contact's queue
        # when its task starts, in the order they were made, so they leave in order.
        pending: set[asyncio.Task[None]] = set()
        try:
            for chunk in chunks[job.next:]:
                if self.contacts.accepted(*key) is None:
                    raise UserError("no longer an accepted contact")
                pending.add(asyncio.ensure_future(one(chunk)))
                if len(pending) >= WINDOW:
                    pending = await self._settle(job, pending, done)
            while pending:
                pending = await self._settle(job, pending, done)
        finally:
            for task in pending:
                task.cancel()
        log.info("file of %d chunks sent to %s…", len(chunks), key[1][:8])
