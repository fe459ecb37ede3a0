"""The hardened stream reader: every hostile input ends with the right condition."""

from __future__ import annotations

import random
import time

import pytest

from bridge.xmpp.reader import (
    Limits,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamReader,
)
from bridge.xmpp.streamerror import StreamError

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>
<message><body>&lol9;</body></message>"""


def opened() -> StreamReader:
    reader = StreamReader()
    events = reader.feed(HEADER)
    assert isinstance(events[0], StreamOpened)
    return reader


def condition_of(reader: StreamReader, data: bytes, chunk: int = 0) -> str:
    with pytest.raises(StreamError) as err:
        if chunk:
            for i in range(0, len(data), chunk):
                reader.feed(data[i : i + chunk])
        else:
            reader.feed(data)
    return err.value.condition


def test_stream_open_stanzas_and_close() -> None:
    reader = StreamReader()
    (open_event,) = reader.feed(HEADER)
    assert isinstance(open_event, StreamOpened)
    assert open_event.tag == "{http://etherx.jabber.org/streams}stream"
    assert open_event.default_ns == "jabber:client"
    assert open_event.attrs["to"] == "localhost"
    events = reader.feed(
        b"<message to='a@b' xml:lang='en'><body>x &amp; y &lt; &#x263A;</body></message> \n"
        b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
    )
    assert [type(e) for e in events] == [StanzaReceived, StanzaReceived, StreamClosed]
    msg = events[0].element  # type: ignore[union-attr]
    assert msg.tag == "{jabber:client}message"
    assert msg.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert msg.findtext("{jabber:client}body") == "x & y < \u263a"
    assert events[1].element.find("{urn:xmpp:ping}ping") is not None  # type: ignore[union-attr]


def test_byte_at_a_time_gives_the_same_events() -> None:
    reader = StreamReader()
    data = HEADER + b"<message><body>caf\xc3\xa9</body></message>"
    events = []
    for i in range(len(data)):
        events += reader.feed(data[i : i + 1])
    assert isinstance(events[-1], StanzaReceived)
    assert events[-1].element.findtext("{jabber:client}body") == "café"


def test_stream_header_in_one_byte_pieces_opens_the_stream_at_its_last_byte() -> None:
    # expat >= 2.6 would hold a partial token back until more bytes arrive; a client
    # that sends its header in small pieces and then waits must get the stream at once.
    reader = StreamReader()
    for i in range(len(HEADER) - 1):
        assert reader.feed(HEADER[i : i + 1]) == []
    (event,) = reader.feed(HEADER[-1:])
    assert isinstance(event, StreamOpened)
    assert event.attrs["to"] == "localhost"
    (stanza,) = reader.feed(b"<presence/>")  # and the next stanza in one piece, too
    assert isinstance(stanza, StanzaReceived)


def test_unfinished_tag_in_small_pieces_is_cut_at_the_token_limit() -> None:
    # expat re-scans an unfinished token on every feed: it may not grow to the stanza limit
    reader = opened()
    limits = reader.limits
    assert limits.max_token_bytes < limits.max_stanza_bytes // 4
    piece = 64
    with pytest.raises(StreamError) as err:
        reader.feed(b"<message to='")
        for _ in range(limits.max_stanza_bytes // piece):
            reader.feed(b"a" * piece)
    assert err.value.condition == "policy-violation"
    assert reader._fed - len(HEADER) <= limits.max_token_bytes + piece


def test_unfinished_comment_is_cut_at_the_token_limit_too() -> None:
    reader = opened()
    data = b"<!--" + b"-a" * reader.limits.max_stanza_bytes
    assert condition_of(reader, data, chunk=1000) == "policy-violation"
    assert reader._fed - len(HEADER) <= reader.limits.max_token_bytes + 1000


def test_large_tags_within_the_attribute_limits_pass_in_small_pieces() -> None:
    reader = opened()
    limits = reader.limits
    value = b"v" * limits.max_attribute_bytes
    data = b"<message id='" + value + b"' to='" + value + b"'><body>hi</body></message>"
    events = []
    for i in range(0, len(data), 100):
        events += reader.feed(data[i : i + 100])
    (stanza,) = events
    assert isinstance(stanza, StanzaReceived)
    assert stanza.element.get("to") == value.decode()


def test_billion_laughs_is_restricted_xml() -> None:
    assert condition_of(StreamReader(), BILLION_LAUGHS) == "restricted-xml"


def test_external_entity_is_restricted_xml() -> None:
    xxe = (
        b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
        + HEADER[len(b"<?xml version='1.0'?>") :]
        + b"<message><body>&x;</body></message>"
    )
    assert condition_of(StreamReader(), xxe) == "restricted-xml"


def test_undeclared_entity_reference_is_restricted_xml() -> None:
    assert condition_of(opened(), b"<message><body>&nbsp;</body></message>") == "restricted-xml"


def test_comment_and_processing_instruction_are_restricted_xml() -> None:
    assert condition_of(opened(), b"<message><!-- hi --></message>") == "restricted-xml"
    assert condition_of(opened(), b"<?php echo 1; ?>") == "restricted-xml"
    assert condition_of(StreamReader(), b"<!-- before the stream -->") == "restricted-xml"


def test_non_utf8_declaration_is_unsupported_encoding() -> None:
    data = b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>"
    assert condition_of(StreamReader(), data) == "unsupported-encoding"


def test_ten_megabyte_stanza_without_closing_tag_is_cut_at_the_limit() -> None:
    reader = opened()
    limit = reader.limits.max_stanza_bytes
    fed = 0
    chunk = b"A" * 65536
    with pytest.raises(StreamError) as err:
        reader.feed(b"<message><body>")
        while fed < 10 * 1024 * 1024:
            reader.feed(chunk)
            fed += len(chunk)
    assert err.value.condition == "policy-violation"
    # refused as soon as the allowance ran out, not after buffering 10 MB
    assert fed <= limit
    assert reader._fed <= limit + len(HEADER)  # expat never saw more than the allowance


def test_huge_stanza_in_one_feed_is_refused_without_parsing_it_all() -> None:
    reader = opened()
    start = time.perf_counter()
    data = b"<message><body>" + b"A" * (10 * 1024 * 1024)
    assert condition_of(reader, data) == "policy-violation"
    assert reader._fed <= reader.limits.max_stanza_bytes + len(HEADER)
    assert time.perf_counter() - start < 2


def test_huge_attribute_is_refused() -> None:
    data = b"<message to='" + b"a" * (20 * 1024) + b"'/>"
    assert condition_of(opened(), data) == "policy-violation"


def test_many_attributes_are_refused() -> None:
    attrs = b" ".join(b"a%d='x'" % i for i in range(100))
    assert condition_of(opened(), b"<message " + attrs + b"/>") == "policy-violation"


def test_deep_nesting_is_refused_early() -> None:
    data = b"<a>" * 100_000
    reader = opened()
    assert condition_of(reader, data, chunk=4096) == "policy-violation"
    assert reader._fed < 4096 + len(HEADER) + 4096


def test_many_tiny_elements_are_refused() -> None:
    data = b"<message>" + b"<x/>" * 20_000 + b"</message>"
    assert condition_of(opened(), data) == "policy-violation"


def test_stanzas_up_to_the_limit_pass_and_the_count_restarts() -> None:
    reader = StreamReader(Limits(max_stanza_bytes=4096))
    reader.feed(HEADER)
    body = b"<message><body>" + b"x" * 3000 + b"</body></message>"
    for _ in range(10):  # ten stanzas of 3 KB each through a 4 KB limit
        assert isinstance(reader.feed(body)[0], StanzaReceived)


def test_whitespace_keepalives_do_not_add_up() -> None:
    reader = StreamReader(Limits(max_stanza_bytes=4096))
    reader.feed(HEADER)
    for _ in range(10_000):
        reader.feed(b" ")
    assert reader.at_boundary
    assert isinstance(reader.feed(b"<presence/>")[0], StanzaReceived)


def test_text_at_stream_level_is_bad_format() -> None:
    assert condition_of(opened(), b"hello") == "bad-format"


def test_unbound_prefix_and_mismatched_tags() -> None:
    assert condition_of(opened(), b"<foo:message/>") == "bad-namespace-prefix"
    assert condition_of(opened(), b"<message></iq>") == "not-well-formed"


@pytest.mark.parametrize("seed", range(20))
def test_garbage_bytes_are_not_well_formed(seed: int) -> None:
    rng = random.Random(seed)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    reader = opened()
    with pytest.raises(StreamError) as err:
        reader.feed(b"<message>" + garbage)
        reader.feed(b"</message>" * 50)
    assert err.value.condition in {
        "not-well-formed",
        "restricted-xml",
        "bad-namespace-prefix",
        "bad-format",
        "policy-violation",
    }


def test_random_bytes_before_the_header() -> None:
    assert condition_of(StreamReader(), b"D\x00\x01garbage") in {
        "not-well-formed",
        "bad-format",
    }


def test_reader_stays_dead_after_an_error_and_reset_revives_it() -> None:
    reader = opened()
    condition_of(reader, b"<!-- x -->")
    with pytest.raises(StreamError):
        reader.feed(b"<presence/>")
    reader.reset()
    assert isinstance(reader.feed(HEADER)[0], StreamOpened)
    assert isinstance(reader.feed(b"<presence/>")[0], StanzaReceived)


def test_reset_mid_stream_starts_a_new_document() -> None:
    reader = opened()
    reader.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    reader.reset()  # as after TLS: a second header is legal again
    assert isinstance(reader.feed(HEADER)[0], StreamOpened)
