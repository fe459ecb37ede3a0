"""Three real ``paranoim run`` daemons for the private-group tests: Alice on A, Bob
on B, Carol on C; Alice knows Bob and Carol (both ways), Bob and Carol do not know
each other. B and C link to A. Clients carry XEP-0045 and XEP-0249."""

from __future__ import annotations

import functools
from pathlib import Path

from tests.integration.e2e_support import Account, Client, Daemon, in_parallel

GROUPS = "groups.localhost"


def trio(root: Path) -> tuple[Daemon, Daemon, Daemon]:
    """The three sandboxes, identities and contacts made with the real CLI (not started)."""
    a, b, c = (Daemon(root / n, n.upper()) for n in ("a", "b", "c"))
    in_parallel(*[functools.partial(d.new_identity, n)
                  for d, n in ((a, "Alice"), (b, "Bob"), (c, "Carol"))])
    alice, bob, carol = a.accounts["Alice"], b.accounts["Bob"], c.accounts["Carol"]
    in_parallel(lambda: (a.add_contact("Alice", bob), a.add_contact("Alice", carol)),
                lambda: b.add_contact("Bob", alice), lambda: c.add_contact("Carol", alice))
    return a, b, c


def start_trio(a: Daemon, b: Daemon, c: Daemon) -> None:
    a.start()
    in_parallel(lambda: b.start("--peer", a.p2p), lambda: c.start("--peer", a.p2p))


class GroupClient(Client):
    """A client that also speaks XEP-0249 and records the invitations it gets."""

    def __init__(self, account: Account, daemon: Daemon) -> None:
        super().__init__(account, daemon)
        self.register_plugin("xep_0249")
        self.invitations: list[str] = []  # room JIDs, in arrival order
        self.add_event_handler("groupchat_direct_invite", lambda m: self.invitations.append(
            str(m["groupchat_invite"]["jid"])))

    def said(self, room: str, text: str) -> int:
        """How many times ``text`` arrived from an occupant of ``room``."""
        return sum(1 for m in self.messages if m["type"] == "groupchat"
                   and m["from"].bare == room and m["from"].resource and m["body"] == text)
