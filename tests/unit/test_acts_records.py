"""Acts (flag 8) and presences (flag 16) in direct-message records: the vectors of
docs/vectors/stamped.json ("acts") read by hand from their bytes as docs/envelope.md
§10 lays them out, round trips, and hostile bytes refused with a protocol error only."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import envelope as E
from bridge.core import errors
from bridge.core.acts import MAX_REACTION, MAX_REACTIONS, MAX_STATUS, Act, ActKind, Presence, Show
from bridge.core.errors import LocalProtocolError, RemoteProtocolError
from bridge.core.records import DirectMessage, parse_record

ROOT = Path(__file__).resolve().parents[2]
ACTS: dict[str, Any] = json.loads((ROOT / "docs" / "vectors" / "stamped.json")
                                  .read_text("utf-8"))["acts"]
NOW_MS = 1_800_000_000 * 1000


def _short(raw: bytes, at: int) -> tuple[str, int]:
    n = raw[at]
    return raw[at + 1:at + 1 + n].decode(), at + 1 + n


def by_hand(raw: bytes) -> dict[str, Any]:
    """The fields of a record with flag 8 or 16, read as the spec says (no project code)."""
    sent_at, flags = struct.unpack(">QB", raw[:9])
    assert sent_at == NOW_MS
    msgid, at = _short(raw, 9)
    if flags == 16:
        status, end = _short(raw, at + 1)
        assert end == len(raw)
        return {"presence": raw[at], "status": status}
    assert flags & 8 and not flags & ~9
    code = raw[at]
    ref, at = _short(raw, at + 1)
    out: dict[str, Any] = {"receipt": bool(flags & 1), "id": msgid, "act": code, "ref": ref}
    if code == 2:
        out["to_recipient"], at = bool(raw[at]), at + 1
    if code == 3:
        count, at = raw[at], at + 1
        out["reactions"] = []
        for _ in range(count):
            r, at = _short(raw, at)
            out["reactions"].append(r)
    out["text"] = raw[at:].decode()
    return out


def test_act_vectors_read_by_hand_match_the_code() -> None:
    want = [
        {"receipt": True, "id": "m-2", "act": 1, "ref": "m-1", "text": "hello"},
        {"receipt": False, "id": "m-3", "act": 2, "ref": "b-1", "to_recipient": True,
         "text": "this one"},
        {"receipt": False, "id": "", "act": 3, "ref": "m-1", "reactions": ["👍", "🎉"],
         "text": ""},
        {"receipt": False, "id": "", "act": 3, "ref": "m-1", "reactions": [], "text": ""},
        {"receipt": False, "id": "", "act": 4, "ref": "m-1", "text": ""},
        {"receipt": False, "id": "", "act": 5, "ref": "b-1", "text": ""},
        {"presence": 3, "status": "lunch"},
        {"presence": 6, "status": ""},
    ]
    assert [by_hand(bytes.fromhex(v["record"])) for v in ACTS["records"]] == want
    for v in ACTS["records"]:
        raw = bytes.fromhex(v["record"])
        rec = parse_record(E.Kind.DIRECT, raw, version=2)
        assert isinstance(rec, DirectMessage) and rec.encode() == raw
        assert DirectMessage.parse(raw) == rec  # version 1 reads them the same


@pytest.mark.parametrize("v", ACTS["refused"], ids=lambda v: v["case"])
def test_refused_act_records(v: dict[str, Any]) -> None:
    with pytest.raises(getattr(errors, v["error"])):
        parse_record(E.Kind.DIRECT, bytes.fromhex(v["record"]), version=2)


def test_encoders_refuse_what_parsers_refuse() -> None:
    with pytest.raises(LocalProtocolError):
        Act(ActKind.REACTION, "m", ("x",) * 2)
    with pytest.raises(LocalProtocolError):
        Act(ActKind.REACTION, "m", tuple(str(i) for i in range(MAX_REACTIONS + 1)))
    with pytest.raises(LocalProtocolError):
        Act(ActKind.REACTION, "m", ("x" * (MAX_REACTION + 1),))
    with pytest.raises(LocalProtocolError):
        Act(ActKind.RETRACTION, "")
    with pytest.raises(LocalProtocolError):
        Act(ActKind.RETRACTION, "m" * 65)
    with pytest.raises(LocalProtocolError):
        DirectMessage(1, "text", act=Act(ActKind.RETRACTION, "m"))
    with pytest.raises(LocalProtocolError):
        DirectMessage(1, "", act=Act(ActKind.CORRECTION, "m"))
    with pytest.raises(LocalProtocolError):
        Presence(Show.AWAY, "s" * (MAX_STATUS + 1))
    with pytest.raises(LocalProtocolError):
        DirectMessage(1, "", message_id="x", presence=Presence(Show.AWAY))


_ids = st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 64)
_reaction = st.text(min_size=1, max_size=4).filter(lambda s: len(s.encode()) <= MAX_REACTION)


@st.composite
def records(draw: st.DrawFn) -> DirectMessage:
    sent_at = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        status = draw(st.text(max_size=16).filter(lambda s: len(s.encode()) <= MAX_STATUS))
        return DirectMessage.presence_of(sent_at, Presence(draw(st.sampled_from(Show)), status))
    kind = draw(st.sampled_from(ActKind))
    reactions = (tuple(draw(st.lists(_reaction, max_size=MAX_REACTIONS, unique=True)))
                 if kind is ActKind.REACTION else ())
    act = Act(kind, draw(_ids), reactions,
              draw(st.booleans()) if kind is ActKind.REPLY else False)
    texty = kind in (ActKind.CORRECTION, ActKind.REPLY)
    return DirectMessage(sent_at, draw(st.text(min_size=1)) if texty else "",
                         draw(st.booleans()) if texty else False, draw(_ids), act=act)


@given(records())
def test_every_record_has_one_encoding(msg: DirectMessage) -> None:
    raw = msg.encode()
    assert parse_record(E.Kind.DIRECT, raw, version=2) == msg
    for cut in range(len(raw) - 1, 8, -1):
        try:  # a prefix either fails with a protocol error or is another valid record
            other = DirectMessage.parse(raw[:cut])
        except RemoteProtocolError:
            continue
        assert other.encode() == raw[:cut]


@given(st.binary(max_size=300))
def test_hostile_bytes_raise_only_protocol_errors(tail: bytes) -> None:
    for flags in (8, 9, 16, 10, 24):
        raw = struct.pack(">QB", 1, flags) + tail
        try:
            msg = DirectMessage.parse(raw)
        except RemoteProtocolError:
            continue
        assert msg.encode() == raw
