"""Hardened XMPP stream reader: bytes in, stream events out (sans-IO).

Owns every limit on what a client may send as XML. slixmpp and the stdlib
``XMLPullParser`` set none (measured with slixmpp 1.17: a 200 MB unterminated
stanza grew a process to 626 MB; 200,000-deep nesting was accepted), and expat
2.5 only stops entity expansion past 8 MiB and is quadratic on one huge token,
so the reader counts bytes and depth itself and refuses XML features RFC 6120
§11.1 forbids before expat gets to do anything expensive with them.

Rules:
- DOCTYPE, entity/notation/element/attlist declarations, entity references
  other than the five predefined ones, comments and processing instructions
  -> ``restricted-xml``.
- A stanza may not take more than ``max_stanza_bytes`` raw bytes. Counting is
  done on the bytes *before* they reach expat: never more than the remaining
  allowance is fed, so expat's buffer and the tree being built stay bounded
  no matter how the input is chunked -> ``policy-violation``.
- Depth, elements per stanza, attributes per element and attribute size are
  bounded -> ``policy-violation``.
- One unfinished tag (or any other markup token) may not grow past
  ``max_token_bytes`` -> ``policy-violation``. expat re-scans a partial token
  from its start on every feed, so this bounds the work one small feed can
  cause; feeding at most 64 KiB at a time bounds it for one large feed.
- Events come out as soon as their last byte is fed, on every expat: the
  reparse deferral of expat >= 2.6 (which holds a partial token back until
  enough new bytes arrive) is switched off, or a client that sends its stream
  header in small pieces and waits for the features would wait for ever. The
  two bounds above do that defence's job here.
- Anything expat rejects -> ``not-well-formed`` (unbound prefix ->
  ``bad-namespace-prefix``), a non-UTF-8 declaration -> ``unsupported-encoding``.

After an error the reader is dead; ``reset()`` starts a fresh stream (used
after STARTTLS and after SASL success, when the client opens a new stream).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pyexpat import ExpatError, ParserCreate, errors
from typing import Any

from bridge.xmpp.streamerror import StreamError

__all__ = ["Limits", "StanzaReceived", "StreamClosed", "StreamOpened", "StreamReader"]

_NS_SEP = "}"  # expat joins namespace and local name with this; ET wants "{ns}local"
_FEED_CHUNK = 64 * 1024  # bounds expat's re-scan of a partial token within one large feed

# expat error codes that mean something more precise than "not well-formed".
_RESTRICTED_CODES = {
    errors.codes[errors.XML_ERROR_UNDEFINED_ENTITY],
    errors.codes[errors.XML_ERROR_RECURSIVE_ENTITY_REF],
    errors.codes[errors.XML_ERROR_EXTERNAL_ENTITY_HANDLING],
    errors.codes[errors.XML_ERROR_BINARY_ENTITY_REF],
    errors.codes[errors.XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF],
    errors.codes[errors.XML_ERROR_PARAM_ENTITY_REF],
}
_PREFIX_CODES = {errors.codes[errors.XML_ERROR_UNBOUND_PREFIX]}
_ENCODING_CODES = {
    errors.codes[errors.XML_ERROR_UNKNOWN_ENCODING],
    errors.codes[errors.XML_ERROR_INCORRECT_ENCODING],
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may send; the defaults are generous for real clients."""

    max_stanza_bytes: int = 256 * 1024
    max_depth: int = 48  # counting the <stream:stream> element as depth 1
    max_elements: int = 10_000  # per stanza: a tree of tiny elements costs ~50x its bytes
    max_attributes: int = 64  # per element
    max_attribute_bytes: int = 16 * 1024  # one attribute value (JIDs are < 3072 bytes)
    max_name_chars: int = 1024  # element and attribute names, namespace included
    max_token_bytes: int = 32 * 1024  # one tag; expat re-scans a partial one on every feed

    def __post_init__(self) -> None:
        if min(self.max_stanza_bytes, self.max_depth, self.max_elements, self.max_token_bytes) < 2:
            raise ValueError("limits too small to carry any stanza")


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """``<stream:stream ...>`` arrived; ``tag`` is ``{namespace}local``."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    default_ns: str | None = None


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    """One complete top-level element (a stanza or a stream-level element)."""

    element: ET.Element


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """``</stream:stream>`` arrived."""


Event = StreamOpened | StanzaReceived | StreamClosed


def _qualify(name: str) -> str:
    return "{" + name if _NS_SEP in name else name


class StreamReader:
    """Feed raw bytes with ``feed()``; it returns the events they complete."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.reset()

    # --- public ----------------------------------------------------------

    def reset(self) -> None:
        """Forget everything and expect a new stream header."""
        parser = ParserCreate("UTF-8", _NS_SEP)  # forced UTF-8, RFC 6120 §11.6
        parser.buffer_text = True
        parser.ordered_attributes = False
        parser.specified_attributes = True
        parser.SetParamEntityParsing(0)  # XML_PARAM_ENTITY_PARSING_NEVER
        # expat >= 2.6 (Python 3.13, and builds of older Pythons with that expat)
        # would hold back a token until "enough" new bytes arrive; see the module doc.
        if hasattr(parser, "SetReparseDeferralEnabled"):
            parser.SetReparseDeferralEnabled(False)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartNamespaceDeclHandler = self._ns_decl
        parser.XmlDeclHandler = self._xml_decl
        for name in (
            "StartDoctypeDeclHandler",
            "EntityDeclHandler",
            "UnparsedEntityDeclHandler",
            "NotationDeclHandler",
            "ElementDeclHandler",
            "AttlistDeclHandler",
            "ExternalEntityRefHandler",
            "SkippedEntityHandler",
            "CommentHandler",
            "ProcessingInstructionHandler",
        ):
            setattr(parser, name, self._make_refusal(name))
        self._parser = parser
        self._events: list[Event] = []
        self._depth = 0
        self._stack: list[ET.Element] = []
        self._elements = 0
        self._pending_default_ns: str | None = None
        self._fed = 0  # raw bytes handed to expat on this stream
        self._boundary = 0  # byte index where the stanza being read began
        self._error: StreamError | None = None
        self._closed = False
        self._started = False  # saw the first non-whitespace byte of this stream

    @property
    def at_boundary(self) -> bool:
        """True when no stanza is partly received (for idle vs. slow-sender timeouts)."""
        return not self._stack

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; raise ``StreamError`` on anything a client may not send."""
        if self._error is not None:
            raise self._error
        try:
            if not self._started:
                data = self._check_first_byte(data)
            view = memoryview(data)
            while view:
                room = self.limits.max_stanza_bytes - (self._fed - self._boundary)
                if room <= 0:
                    raise StreamError(
                        "policy-violation",
                        f"stanza larger than {self.limits.max_stanza_bytes} bytes",
                    )
                take = min(room, _FEED_CHUNK, len(view))
                chunk = bytes(view[:take])
                view = view[take:]
                self._fed += take
                self._parser.Parse(chunk, False)
                # Once Parse returns, CurrentByteIndex is where the unfinished token starts.
                if self._fed - self._parser.CurrentByteIndex > self.limits.max_token_bytes:
                    raise StreamError(
                        "policy-violation",
                        f"a tag longer than {self.limits.max_token_bytes} bytes",
                    )
        except StreamError as exc:
            self._fail(exc)
        except ExpatError as exc:
            self._fail(self._map_expat(exc))
        events, self._events = self._events, []
        return events

    def _check_first_byte(self, data: bytes) -> bytes:
        # expat waits for more input on garbage such as b"D\x00..." before the
        # first token; a stream must start with "<" (after optional whitespace),
        # so say no at once instead of waiting for the timeout.
        head = data.lstrip(b" \t\r\n")
        if head:
            self._started = True
            if head[:1] != b"<" and head[:3] != b"\xef\xbb\xbf":  # UTF-8 BOM is allowed
                raise StreamError("not-well-formed", "an XMPP stream starts with '<'")
        return data

    # --- expat handlers ----------------------------------------------------

    def _fail(self, exc: StreamError) -> None:
        self._error = exc
        self._events = []
        self._stack = []
        raise exc

    @staticmethod
    def _map_expat(exc: ExpatError) -> StreamError:
        message = errors.messages.get(exc.code, str(exc))
        if exc.code in _RESTRICTED_CODES:
            return StreamError("restricted-xml", "entity references are not allowed")
        if exc.code in _PREFIX_CODES:
            return StreamError("bad-namespace-prefix", "unbound namespace prefix")
        if exc.code in _ENCODING_CODES:
            return StreamError("unsupported-encoding", "XMPP streams are UTF-8")
        return StreamError("not-well-formed", f"XML error: {message}")

    def _make_refusal(self, handler: str) -> Any:
        what = {
            "CommentHandler": "comments are",
            "ProcessingInstructionHandler": "processing instructions are",
        }.get(handler, "DTDs and entity declarations are")

        def refuse(*_args: object) -> None:
            raise StreamError("restricted-xml", f"{what} not allowed in XMPP")

        return refuse

    def _xml_decl(self, _version: str, encoding: str | None, _standalone: int) -> None:
        if encoding and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise StreamError("unsupported-encoding", "XMPP streams are UTF-8")

    def _ns_decl(self, prefix: str | None, uri: str) -> None:
        if self._depth == 0 and prefix is None:
            self._pending_default_ns = uri

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        limits = self.limits
        self._depth += 1
        if self._depth > limits.max_depth:
            raise StreamError("policy-violation", f"XML nested deeper than {limits.max_depth}")
        if len(attrs) > limits.max_attributes:
            raise StreamError("policy-violation", "too many attributes on one element")
        if len(name) > limits.max_name_chars:
            raise StreamError("policy-violation", "element name too long")
        clean: dict[str, str] = {}
        for key, value in attrs.items():
            if len(value) > limits.max_attribute_bytes or len(key) > limits.max_name_chars:
                raise StreamError("policy-violation", "attribute too large")
            clean[_qualify(key)] = value
        tag = _qualify(name)
        if self._depth == 1:
            self._events.append(StreamOpened(tag, clean, self._pending_default_ns))
            self._boundary = self._parser.CurrentByteIndex
            return
        if self._depth == 2:
            self._elements = 0
            element = ET.Element(tag, clean)
        else:
            element = ET.SubElement(self._stack[-1], tag, clean)
        self._elements += 1
        if self._elements > limits.max_elements:
            raise StreamError("policy-violation", "too many elements in one stanza")
        self._stack.append(element)

    def _end(self, _name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._closed = True
            self._events.append(StreamClosed())
            return
        element = self._stack.pop()
        if not self._stack:
            self._events.append(StanzaReceived(element))
            self._boundary = self._parser.CurrentByteIndex

    def _text(self, data: str) -> None:
        if not self._stack:
            if data.strip():
                raise StreamError("bad-format", "text outside a stanza")
            # whitespace keepalive between stanzas: it is not part of any stanza
            if self._depth == 1:
                self._boundary = self._parser.CurrentByteIndex
            return
        current = self._stack[-1]
        if len(current):
            last = current[-1]
            last.tail = (last.tail or "") + data
        else:
            current.text = (current.text or "") + data
