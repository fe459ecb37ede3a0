"""The "groups" part of docs/vectors/stamped.json (built by tests/vectors/stamped.py):
version-2 direct-message records with flag 64 (docs/envelope.md §10,
``bridge.core.groups``), and records a parser refuses. Alice (seed ``a1``×32)
creates the group ``00 01 … 0f`` and adds Bob (seed ``b0``×32); Bob writes in it."""

from __future__ import annotations

import struct
from typing import Any

from bridge.core import crypto
from bridge.core import envelope as E
from bridge.core.errors import RemoteProtocolError
from bridge.core.groups import SIG_GROUP_MESSAGE, SIG_GROUP_STATE, GroupMessage, GroupState
from bridge.core.records import DirectMessage, parse_record


def group_records(now: int) -> dict[str, Any]:
    ms = now * 1000
    alice_pub, alice_sk = crypto.ed25519_keypair(b"\xa1" * 32)
    bob_pub, bob_sk = crypto.ed25519_keypair(b"\xb0" * 32)
    gid = bytes(range(16))
    first = GroupState.make(alice_sk, gid, 1, "friends", alice_pub, {alice_pub})
    second = GroupState.make(alice_sk, gid, 2, "friends", alice_pub, {alice_pub, bob_pub})
    said = GroupMessage.make(bob_sk, bob_pub, gid, 2, ms, "g-1", "hello, group")
    made = [("Alice's group, created (version 1, Alice alone)", first),
            ("Bob added (version 2), as it reaches Bob and Alice's other members", second),
            ("Bob's message at version 2, as Alice's daemon passes it on", said)]
    good = DirectMessage(ms, "", group=second).encode()
    head = good[:10]
    forged = GroupState(gid, 3, "friends", alice_pub, second.members,
                        crypto.sign(bob_sk, SIG_GROUP_STATE + good[11:-64]))
    refused = [
        ("a group record with another flag", good[:8] + b"\x41" + good[9:]),
        ("a group record with a message id", good[:9] + b"\x01x" + good[10:]),
        ("an unknown group record", head + b"\x03" + good[11:]),
        ("a state with 33 members claimed", good[:71] + b"\x21" + good[72:]),
        ("members not in ascending order",
         good[:72] + good[104:136] + good[72:104] + good[136:]),
        ("a state cut inside its signature", good[:-1]),
        ("a byte after a state's signature", good + b"\x00"),
        ("a message without text", DirectMessage(ms, "", group=said).encode()[:-12]),
    ]
    out: dict[str, Any] = {
        "signature_tags_hex": {"SIG_GROUP_STATE": SIG_GROUP_STATE.hex(),
                               "SIG_GROUP_MESSAGE": SIG_GROUP_MESSAGE.hex()},
        "signers": {"alice": alice_pub.hex(), "bob": bob_pub.hex()},
        "records": [], "refused": [],
        "forged": {"case": "version 3 signed by Bob, naming Alice as creator: parses, "
                           "does not verify",
                   "record": DirectMessage(ms, "", group=forged).encode().hex()},
    }
    for case, record in made:
        payload = DirectMessage(ms, "", group=record).encode()
        back = parse_record(E.Kind.DIRECT, payload, version=2)
        assert isinstance(back, DirectMessage) and back.group == record
        record.verify()
        out["records"].append({"case": case, "record": payload.hex()})
    for case, payload in refused:
        try:
            parse_record(E.Kind.DIRECT, payload, version=2)
        except RemoteProtocolError as exc:
            out["refused"].append({"case": case, "error": type(exc).__name__,
                                   "record": payload.hex()})
        else:
            raise AssertionError(f"{case}: parsed")
    assert struct.unpack(">Q", good[:8]) == (ms,)
    return out
