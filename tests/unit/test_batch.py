"""Several chat messages in one session envelope: the batch record (core.batch)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.acts import Act, ActKind
from bridge.core.batch import (
    MAX_RECORDS,
    Batch,
    batch_size,
    batchable,
    encode_batch,
    is_batch,
    parse_session_record,
    record_id,
)
from bridge.core.envelope import Kind
from bridge.core.errors import LocalProtocolError, MalformedError, NonCanonicalError
from bridge.core.records import ChatState, DirectMessage, Receipt

texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
messages = st.builds(DirectMessage, st.integers(0, 2**63), texts, st.booleans(),
                     st.text("abcdef0123456789", max_size=20))


@given(st.lists(messages, min_size=2, max_size=MAX_RECORDS))
def test_a_batch_round_trips_and_has_one_encoding(records: list[DirectMessage]) -> None:
    batch = Batch(tuple(records))
    data = batch.encode()
    assert is_batch(data) and Batch.parse(data) == batch
    assert parse_session_record(Kind.DIRECT, data) == batch
    assert len(data) == batch_size([len(r.encode()) for r in records])


def test_a_single_message_is_not_a_batch() -> None:
    one = DirectMessage(5, "hello", True, "m1")
    assert not is_batch(one.encode())
    assert parse_session_record(Kind.DIRECT, one.encode()) == one
    assert batch_size([len(one.encode())]) == len(one.encode())


def test_acts_travel_in_batches_and_nothing_else_does() -> None:
    reaction = DirectMessage(1, "", message_id="r", act=Act(ActKind.REACTION, "m1", ("👍",)))
    assert batchable(reaction) and batchable(DirectMessage(1, "text"))
    for alone in (DirectMessage.state(1, ChatState.COMPOSING), DirectMessage(1, "")):
        assert not batchable(alone)
        with pytest.raises(LocalProtocolError):
            Batch((DirectMessage(1, "text"), alone))
    with pytest.raises(LocalProtocolError):
        Batch((DirectMessage(1, "only one"),))
    Batch((DirectMessage(1, "a"), reaction))


def _raw(sent_at: int, records: list[bytes], count: int | None = None) -> bytes:
    out = bytearray(sent_at.to_bytes(8, "big") + bytes([2, len(records) if count is None
                                                          else count]))
    for r in records:
        out += len(r).to_bytes(2, "big") + r
    return bytes(out)


@pytest.mark.parametrize(("data", "error"), [
    (_raw(1, [DirectMessage(1, "a").encode()]), MalformedError),  # one record
    (_raw(1, [DirectMessage(1, "a").encode()] * 33), MalformedError),  # too many
    (_raw(1, [DirectMessage(1, "a").encode(), b""]), MalformedError),  # an empty one
    (_raw(2, [DirectMessage(1, "a").encode()] * 2), NonCanonicalError),  # dated wrongly
    (_raw(1, [DirectMessage(1, "a").encode()] * 2) + b"x", NonCanonicalError),  # trailing
    (_raw(1, [DirectMessage(1, "a").encode(), DirectMessage.state(1, ChatState.PAUSED)
              .encode()]), NonCanonicalError),  # a chat state inside
    (_raw(1, [DirectMessage(1, "a").encode(), _raw(1, [DirectMessage(1, "b").encode()] * 2)]),
     Exception),  # a batch inside a batch
])
def test_a_bad_batch_is_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        Batch.parse(data)


def test_a_batch_is_only_a_direct_message() -> None:
    data = encode_batch([DirectMessage(1, "a").encode()] * 2, 1)
    with pytest.raises(Exception):  # noqa: B017 - a receipt's own parse refuses it
        parse_session_record(Kind.RECEIPT, data)
    assert isinstance(parse_session_record(Kind.RECEIPT, Receipt(((b"i" * 32, "m"),))
                                           .encode()), Receipt)


def test_each_record_has_its_own_id_and_a_lone_one_the_envelopes() -> None:
    env = bytes(range(32))
    assert record_id(env, 0, 1) == env
    ids = {record_id(env, n, 3) for n in range(3)}
    assert len(ids) == 3 and env not in ids and all(len(i) == 32 for i in ids)
    assert record_id(env, 1, 3) != record_id(bytes(32), 1, 3)
