"""A private group across three real daemons, with slixmpp clients (XEP-0045,
XEP-0249): Alice creates it by joining a new room on groups.localhost, invites Bob
(mediated) and Carol (direct); all three write and each sees every message exactly
once; Alice removes Carol, who then gets nothing of the group and cannot write to it.
Bob and Carol are not each other's contacts: their messages pass through Alice's
daemon (docs/groups.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import slixmpp

from tests.integration.e2e_support import Daemon, logged_in
from tests.integration.groups_support import GROUPS, GroupClient, start_trio, trio

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon, Daemon]]:
    made = trio(tmp_path)
    try:
        start_trio(*made)
        yield made
    finally:
        for d in made:
            d.stop()


async def test_three_daemons_share_a_private_group(
        daemons: tuple[Daemon, Daemon, Daemon]) -> None:
    a, b, c = daemons
    alice, bob, carol = a.accounts["Alice"], b.accounts["Bob"], c.accounts["Carol"]
    ca, cb, cc = GroupClient(alice, a), GroupClient(bob, b), GroupClient(carol, c)
    async with logged_in(ca, cb, cc):
        room = f"friends@{GROUPS}"
        await ca.plugin["xep_0045"].join_muc_wait(slixmpp.JID(room), "Alice", timeout=20)
        created = [p for p in ca.presences if str(p["from"]) == f"{room}/Alice"]
        assert 201 in created[0]["muc"]["status_codes"]  # a new room
        info = await ca.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert "muc_membersonly" in info["disco_info"]["features"]

        ca.plugin["xep_0045"].invite(room, bob.contact_jid)  # XEP-0045, mediated
        await cb.wait(lambda: cb.invitations, 60, "Bob's invitation")
        ca.plugin["xep_0249"].send_invitation(slixmpp.JID(carol.contact_jid),
                                              slixmpp.JID(room))  # XEP-0249, direct
        await cc.wait(lambda: cc.invitations, 60, "Carol's invitation")
        rooms = {cb: cb.invitations[0], cc: cc.invitations[0]}
        assert all(r.startswith("friends-") and r.endswith(f"@{GROUPS}") for r in rooms.values())
        await cb.plugin["xep_0045"].join_muc_wait(slixmpp.JID(rooms[cb]), "Bob", timeout=20)
        await cc.plugin["xep_0045"].join_muc_wait(slixmpp.JID(rooms[cc]), "Carol", timeout=20)
        rooms[ca] = room

        # Bob learns of Carol once Alice's second state reaches him: Carol is an occupant.
        await cb.wait(lambda: any(carol.address[:6] in str(p["from"].resource)
                                  for p in cb.presences if p["from"].bare == rooms[cb]),
                      60, "Carol among Bob's occupants")
        lines = {ca: "hello from alice", cb: "hello from bob", cc: "hello from carol"}
        for client, text in lines.items():
            client.send_message(mto=slixmpp.JID(rooms[client]), mbody=text, mtype="groupchat")
        for client in (ca, cb, cc):
            for text in lines.values():
                await client.wait(lambda cl=client, t=text: cl.said(rooms[cl], t), 90,
                                  f"{text!r} in the room")

        await ca.plugin["xep_0045"].set_affiliation(room, "none", jid=carol.contact_jid)
        await cc.wait(lambda: any(321 in p["muc"]["status_codes"] for p in cc.presences
                                  if str(p["from"]) == f"{rooms[cc]}/Carol"),
                      60, "Carol's removal")
        await cb.wait(lambda: any(p["type"] == "unavailable" and carol.address[:6]
                                  in str(p["from"].resource)
                                  for p in cb.presences if p["from"].bare == rooms[cb]),
                      60, "Carol leaving Bob's room")
        ca.send_message(mto=slixmpp.JID(room), mbody="carol is gone", mtype="groupchat")
        ca.chat(carol.contact_jid, "after the group message")  # same pair, in order behind it
        await cb.wait(lambda: cb.said(rooms[cb], "carol is gone"), 90, "the next message")
        await cc.wait_body(alice.contact_jid, "after the group message", 90)
        assert not cc.said(rooms[cc], "carol is gone")
        cc.send_presence(pto=f"{rooms[cc]}/Carol")  # joining again: her daemon keeps her out
        refused = await cc.wait(lambda: next((p for p in cc.presences if p["type"] == "error"
                                              and p["from"].bare == rooms[cc]), None),
                                20, "the refusal of Carol's join")
        assert refused["error"]["condition"] == "registration-required"
        cc.send_message(mto=slixmpp.JID(rooms[cc]), mbody="let me back", mtype="groupchat")
        await cc.wait(lambda: cc.errors(), 20, "the refusal of Carol's message")
        ca.send_message(mto=slixmpp.JID(room), mbody="last", mtype="groupchat")
        await cb.wait(lambda: cb.said(rooms[cb], "last"), 90, "the last message")

        for client in (ca, cb, cc):  # every message exactly once, nothing of Carol's after
            for text in lines.values():
                assert client.said(rooms[client], text) == 1, (client.account.nick, text)
        assert cb.said(rooms[cb], "carol is gone") == 1 and not cb.said(rooms[cb], "let me back")
        assert not ca.said(room, "let me back")
        for d in daemons:
            assert "Traceback" not in d.log_text()
