"""End to end: corrections, reactions, retractions and replies (always), read markers
and presence (opt-in at both ends) between two real daemons, each with a slixmpp
client that has the XEP plugins (0308, 0333, 0444, 0424, 0461). Alice on A, Bob on
B, contacts of each other (``test_e2e_xmpp.py``'s set-up).

"both": both daemons run with ``--markers --presence``. "half": only A does; then
nothing of either crosses, in either direction. Each act's stanza at Bob names the
id Alice's client gave the message it acts on."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import slixmpp

from tests.integration.e2e_support import (
    Client,
    Daemon,
    in_parallel,
    pair_from_template,
    start_pair,
)

pytestmark = pytest.mark.slow
PLUGINS = ("xep_0308", "xep_0333", "xep_0444", "xep_0424", "xep_0461")
REACTIONS_NS = "urn:xmpp:reactions:0"


class ActClient(Client):
    """A client with the XEP plugins whose first presence is away, status ``hello``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for plugin in PLUGINS:
            self.register_plugin(plugin)

    async def _on_session_start(self, _event: object) -> None:
        await self.get_roster(timeout=10)
        self.send_presence(pshow="away", pstatus="hello")
        self._session.set()

    def with_(self, jid: str, attrib: str) -> list[Any]:
        """Messages from ``jid`` that carry ``attrib`` (a slixmpp plugin's element)."""
        return [m for m in self.messages if m["from"].bare == jid and _has(m, attrib)]

    def presences_from(self, jid: str) -> list[tuple[str, str, str]]:
        """(type attribute, show, status) of each presence from ``jid``, in order."""
        return [(p.xml.get("type", ""), str(p["show"]), str(p["status"]))
                for p in self.presences if p["from"].bare == jid]


async def _login(account: Any, daemon: Daemon) -> ActClient:
    client = ActClient(account, daemon)
    await client.login()
    return client


def _has(m: Any, attrib: str) -> bool:
    namespaces = {"replace": "urn:xmpp:message-correct:0", "reactions": REACTIONS_NS,
                  "retract": "urn:xmpp:message-retract:1", "reply": "urn:xmpp:reply:0",
                  "displayed": "urn:xmpp:chat-markers:0"}
    return m.xml.find(f"{{{namespaces[attrib]}}}{attrib}") is not None


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp("e2e-acts-both"))
    try:
        start_pair(a, b, "--markers", "--presence")
        yield a, b
    finally:
        b.stop()
        a.stop()


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp("e2e-acts-half"))
    try:
        in_parallel(lambda: a.start("--markers", "--presence"),
                    lambda: b.start("--peer", a.p2p))
        yield a, b
    finally:
        b.stop()
        a.stop()


def _reaction(client: Client, to: str, ref: str, *values: str) -> None:
    msg = client.make_message(mto=slixmpp.JID(to), mtype="chat")
    el = ET.SubElement(msg.xml, f"{{{REACTIONS_NS}}}reactions", id=ref)
    for value in values:
        ET.SubElement(el, f"{{{REACTIONS_NS}}}reaction").text = value
    msg.send()


async def test_acts_reach_the_contact_naming_the_message(both: tuple[Daemon, Daemon]) -> None:
    a, b = both
    alice_acc, bob_acc = a.accounts["Alice"], b.accounts["Bob"]
    alice, bob = await _login(alice_acc, a), await _login(bob_acc, b)
    to_bob, from_alice = bob_acc.contact_jid, alice_acc.contact_jid
    try:
        await alice.wait(alice.peers, 20, "daemon A linked to B")
        info: Any = await alice.plugin["xep_0030"].get_info(jid=slixmpp.JID(to_bob),
                                                            timeout=10)
        for ns in ("urn:xmpp:message-correct:0", REACTIONS_NS, "urn:xmpp:message-retract:1",
                   "urn:xmpp:reply:0", "urn:xmpp:chat-markers:0"):
            assert ns in info["disco_info"]["features"], ns
        alice.chat(to_bob, "helo", ident="m-1")
        await bob.wait_body(from_alice, "helo", 30)

        alice.plugin["xep_0308"].build_correction("m-1", slixmpp.JID(to_bob),
                                                  mbody="hello").send()
        fixed = await bob.wait(lambda: bob.with_(from_alice, "replace"), 30, "the correction")
        assert fixed[0]["replace"]["id"] == "m-1" and fixed[0]["body"] == "hello"

        alice.plugin["xep_0444"].send_reactions(slixmpp.JID(to_bob), "m-1", ["👍", "🎉"])
        got = await bob.wait(lambda: bob.with_(from_alice, "reactions"), 30, "the reaction")
        assert got[0]["reactions"]["id"] == "m-1"
        assert got[0]["reactions"].get_values() == {"👍", "🎉"}

        bob.chat(from_alice, "which one?", ident="b-1")
        await alice.wait_body(to_bob, "which one?", 30)
        reply = alice.plugin["xep_0461"].make_reply(slixmpp.JID(to_bob), "b-1",
                                                    fallback="which one?", mto=to_bob,
                                                    mbody="this one", mtype="chat")
        reply.send()
        got = await bob.wait(lambda: bob.with_(from_alice, "reply"), 30, "the reply")
        assert got[0]["reply"]["id"] == "b-1"
        assert got[0]["body"] == "> which one?\nthis one"  # the quote, for other clients
        assert got[0]["reply"].get_fallback_body() == "> which one?\n"  # hidden by this one
        assert str(got[0]["reply"]["to"]).split("/")[0] == bob_acc.jid  # Bob wrote it

        alice.plugin["xep_0424"].send_retraction(slixmpp.JID(to_bob), "m-1")
        got = await bob.wait(lambda: bob.with_(from_alice, "retract"), 30, "the retraction")
        assert got[0]["retract"]["id"] == "m-1"

        # read markers, both ends on: Bob's client says it displayed Alice's message
        bob.plugin["xep_0333"].send_marker(slixmpp.JID(from_alice), "m-1", "displayed",
                                           mtype="chat")
        got = await alice.wait(lambda: alice.with_(to_bob, "displayed"), 30, "the marker")
        assert got[0]["displayed"]["id"] == "m-1"

        # presence, both ends on: Alice's away/hello reaches Bob, and her going offline
        await bob.wait(lambda: ("", "away", "hello") in bob.presences_from(from_alice), 30,
                       "Alice's away at Bob")
        alice.send_presence(pshow="dnd", pstatus="busy")
        await bob.wait(lambda: any(s == "dnd" for _, s, _ in bob.presences_from(from_alice)),
                       30, "Alice's dnd at Bob")
        assert alice.errors() == [] and bob.errors() == []
        await alice.close()
        await bob.wait(lambda: bob.presences_from(from_alice)[-1][0] == "unavailable", 30,
                       "Alice offline at Bob")
        assert "Traceback" not in a.log_text() + b.log_text()
    finally:
        await alice.close()
        await bob.close()


async def test_hostile_acts_are_refused_cleanly(both: tuple[Daemon, Daemon]) -> None:
    a, b = both
    alice_acc, bob_acc = a.accounts["Alice"], b.accounts["Bob"]
    alice, bob = await _login(alice_acc, a), await _login(bob_acc, b)
    to_bob, from_alice = bob_acc.contact_jid, alice_acc.contact_jid
    try:
        alice.chat(to_bob, "count", ident="c-1")
        await bob.wait_body(from_alice, "count", 30)
        before = len(bob.with_(from_alice, "replace"))

        _reaction(alice, to_bob, "c-1", "x" * 10_000)  # a 10 KB reaction
        _reaction(alice, to_bob, "no-such-id", "👍")  # a message nobody wrote
        await alice.wait(lambda: len(alice.errors()) >= 2, 20, "two refusals")
        conditions = {e["error"]["condition"] for e in alice.errors()}
        assert conditions == {"not-acceptable", "undefined-condition"}
        assert any("no message with id" in e["error"]["text"] for e in alice.errors())

        for n in range(1000):  # a thousand corrections at once: the latest wins
            alice.plugin["xep_0308"].build_correction("c-1", slixmpp.JID(to_bob),
                                                      mbody=f"count {n}").send()
        await bob.wait(lambda: any(m["body"] == "count 999"
                                   for m in bob.with_(from_alice, "replace")), 60,
                       "the last correction")
        corrections = bob.with_(from_alice, "replace")[before:]
        assert len(corrections) <= 10, len(corrections)  # one per second, collapsed
        assert len(alice.errors()) == 2  # none of the thousand was refused
        assert bob.with_(from_alice, "reactions") == [] or all(
            m["reactions"]["id"] != "no-such-id" for m in bob.with_(from_alice, "reactions"))
        assert "Traceback" not in a.log_text() + b.log_text()
    finally:
        await alice.close()
        await bob.close()


async def test_markers_and_presence_need_both_ends(half: tuple[Daemon, Daemon]) -> None:
    """A has them on, B off: B neither shows A's nor sends its own; acts still cross."""
    a, b = half
    alice_acc, bob_acc = a.accounts["Alice"], b.accounts["Bob"]
    alice, bob = await _login(alice_acc, a), await _login(bob_acc, b)
    to_bob, from_alice = bob_acc.contact_jid, alice_acc.contact_jid
    try:
        await alice.wait(alice.peers, 20, "daemon A linked to B")
        info: Any = await bob.plugin["xep_0030"].get_info(jid=slixmpp.JID(from_alice),
                                                          timeout=10)
        assert "urn:xmpp:chat-markers:0" not in info["disco_info"]["features"]
        bob.chat(from_alice, "read me", ident="h-1")
        await alice.wait_body(to_bob, "read me", 30)
        alice.chat(to_bob, "ok", ident="h-2")
        await bob.wait_body(from_alice, "ok", 30)
        # A sends its marker (and sent its away presence at login, before "after")
        alice.plugin["xep_0333"].send_marker(slixmpp.JID(to_bob), "h-1", "displayed",
                                             mtype="chat")
        alice.plugin["xep_0444"].send_reactions(slixmpp.JID(to_bob), "h-1", ["👍"])
        await bob.wait(lambda: bob.with_(from_alice, "reactions"), 30, "the reaction")
        alice.chat(to_bob, "after", ident="h-3")
        await bob.wait_body(from_alice, "after", 30)
        assert bob.with_(from_alice, "displayed") == []
        assert all(show != "away" for _, show, _ in bob.presences_from(from_alice))
        # B's client marks and goes away; B sends neither
        bob.plugin["xep_0333"].send_marker(slixmpp.JID(from_alice), "h-2", "displayed",
                                           mtype="chat")
        bob.send_presence(pshow="xa", pstatus="gone")
        bob.chat(from_alice, "after too", ident="h-4")
        await alice.wait_body(to_bob, "after too", 30)
        assert alice.with_(to_bob, "displayed") == []
        assert all(show not in ("away", "xa") for _, show, _ in alice.presences_from(to_bob))
        assert alice.errors() == [] and bob.errors() == []
    finally:
        await alice.close()
        await bob.close()
