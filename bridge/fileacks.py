"""Whether a file sent reached the contact's daemon: no file is lost silently.

A file's chunks live ``CHUNK_TTL`` (an hour) in the network. When the contact's
daemon is unreachable longer than that (stopped, offline, its node not linked to
ours), or refuses the file (over its own size limit or budgets), the chunks expire
unread and nothing else would ever say so. So:

* the recipient's daemon, when a contact's file is whole and kept, sends back a
  receipt record (``Receipt``: the completing envelope's id and the file's message
  id), which also reaches the sender's clients as an XEP-0184 receipt of the message;
* the sender's daemon, once the last chunk has left, waits ``ACK_WAIT`` (the chunks'
  hour and ``ACK_GRACE`` for the receipt to come back) for it; if none comes, the
  identity's clients are told by the bot that the file did not reach the contact
  and can be sent again (a ``SessionNotice``).

At most ``MAX_WATCHED`` files are followed at once; past that the oldest is told as
not followed (never dropped silently). With storage "sqlite" what is followed is kept
(``FileStore.keep``) with its deadline in wall-clock time and followed again after a
restart; in memory mode a restart forgets it, as it forgets the files waiting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.events import Event, MessageArrived, ReceiptArrived
from bridge.files import FileStore
from bridge.tasks import TaskSet

ACK_GRACE = 600  # seconds, after the chunks' life, for the receipt to come back
MAX_WATCHED = 1024
EARLY = 64  # receipts remembered that came before their file was followed
STATE = "awaiting"  # FileStore.keep name

Key = tuple[str, str, str]  # (owner, contact, message id)


class FileAcks:
    def __init__(self, files: FileStore, tasks: TaskSet,
                 tell: Callable[[str, str, str], None],
                 send_receipt: Callable[[str, str, list[bytes], list[str]],
                                        Coroutine[Any, Any, None]], *, wait: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.files = files
        self.tasks = tasks
        self.tell = tell  # (owner, contact, text): what the identity's clients are told
        self.send_receipt = send_receipt  # (owner, contact, envelope ids, message ids)
        self.wait = wait  # seconds from the last chunk's leaving to giving up
        self.clock = clock
        self.watched: OrderedDict[Key, float] = OrderedDict()  # -> deadline, wall clock
        self._done: dict[Key, asyncio.Event] = {}
        # receipts that came before their file was followed (the last chunk's sending
        # had not returned yet): a few, the latest
        self._early: OrderedDict[Key, None] = OrderedDict()
        self.confirmed = 0
        self.lost = 0

    def sent(self, owner: str, contact: str, message_id: str) -> None:
        """A file's last chunk left: follow it until its receipt or its deadline."""
        key = (owner, contact, message_id)
        if key in self._early:
            del self._early[key]
            self.confirmed += 1
            return
        self._follow(key, self.clock() + self.wait)
        self._save()

    def _follow(self, key: Key, deadline: float) -> None:
        while len(self.watched) >= MAX_WATCHED:
            old, _ = self.watched.popitem(last=False)
            self._done.pop(old, asyncio.Event()).set()
            self.tell(old[0], old[1], f"The file you sent (message {old[2]}) can no longer be "
                      f"followed ({MAX_WATCHED} files wait for their receipt); if they say it "
                      "did not arrive, send it again.")
        self.watched[key] = deadline
        self._done[key] = asyncio.Event()
        self.tasks.spawn(self._watch(key, self._done[key], deadline), name="file receipt")

    async def _watch(self, key: Key, done: asyncio.Event, deadline: float) -> None:
        try:
            await asyncio.wait_for(done.wait(), max(0.0, deadline - self.clock()))
        except TimeoutError:
            if self.watched.get(key) != deadline:
                return
            del self.watched[key]
            self._done.pop(key, None)
            self._save()
            self.lost += 1
            minutes = round(self.wait / 60)
            self.tell(key[0], key[1], f"The file you sent (message {key[2]}) did not reach the "
                      f"contact: their daemon did not confirm it within {minutes} minutes (it "
                      "was unreachable longer than the hour a file's pieces live in the "
                      "network, or refused the file). Send it again when they are online.")

    def on_event(self, event: Event) -> None:
        if isinstance(event, ReceiptArrived):
            for message_id in event.message_ids:
                key = (event.to, event.sender, message_id)
                if self.watched.pop(key, None) is not None:
                    self._done.pop(key, asyncio.Event()).set()
                    self.confirmed += 1
                    self._save()
                else:
                    self._early[key] = None
                    while len(self._early) > EARLY:
                        self._early.popitem(last=False)
        elif isinstance(event, MessageArrived) and event.url and event.message_id:
            # A contact's file, whole and kept here: say so to their daemon.
            self.tasks.spawn(self.send_receipt(event.to, event.sender, [event.envelope_id],
                                               [event.message_id]), name="file receipt")

    def forget(self, owner: str, contact: str = "") -> None:
        for key in [k for k in self.watched if k[0] == owner and contact in ("", k[1])]:
            del self.watched[key]
            self._done.pop(key, asyncio.Event()).set()
        self._save()

    def _save(self) -> None:
        if self.files.at_rest:
            self.files.keep(STATE, json.dumps(
                [[*key, deadline] for key, deadline in self.watched.items()]).encode())

    def resume(self) -> None:
        """Follow again what a previous run followed (storage "sqlite")."""
        for _, raw in self.files.kept(STATE):
            try:
                for owner, contact, message_id, deadline in json.loads(raw):
                    self._follow((str(owner), str(contact), str(message_id)), float(deadline))
            except (ValueError, TypeError):
                continue
