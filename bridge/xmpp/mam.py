"""XEP-0313 message archive management on the embedded listener: the IQ side.

The archive itself is the service's (``ServiceAPI.archive_query``, kept by
``bridge.history``): what an identity was shown and what it sent, per identity,
bounded. This module turns a client's ``<query xmlns='urn:xmpp:mam:2'>`` into a
``core.archive.Query`` and the page back into XEP-0313 result messages and a
``<fin/>`` with XEP-0059 result-set data.

- filters (a ``jabber:x:data`` form of type ``submit``): ``with`` (a contact's
  JID), ``start``/``end`` (XEP-0082 date-times), ``before-id``/``after-id`` and
  ``ids`` (the ``urn:xmpp:mam:2#extended`` ones);
- paging: ``<set xmlns='http://jabber.org/protocol/rsm'>`` with ``max`` (default
  50, at most 250), ``after``, ``before`` (empty: the last page); a page stops
  early (not ``complete``) past ``MAX_PAGE_BYTES`` of results;
- the archive is the user's one-to-one chats; the public room's messages are
  not in it (its clients get the room's own history);
- anything it cannot honour is a stanza error, never a guess: an unknown field
  or a malformed value is ``bad-request``, an id the archive does not hold is
  ``item-not-found``, ``<index/>`` paging is ``feature-not-implemented``.

Each result is a ``<message>`` from the account's bare JID holding
``<result queryid id><forwarded><delay/><message/></forwarded></result>``; the
inner message's id is the sending client's id when it gave one, and its
XEP-0359 stanza-id is the result's id, the same one the live message carried.
"""

from __future__ import annotations

import datetime
import secrets
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID, Iq
from slixmpp.jid import InvalidJID

from bridge.api import MAX_PAGE, ArchiveError, Entry, Page, Query, ServiceAPI
from bridge.xmpp import stanzas as st
from bridge.xmpp.acts import RETRACTED, add_archived_act
from bridge.xmpp.errors import XmppError
from bridge.xmpp.jids import Domains
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

MAM_NS = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
SID_NS = "urn:xmpp:sid:0"
RSM_NS = "http://jabber.org/protocol/rsm"
DATA_NS = "jabber:x:data"
FORWARD_NS = "urn:xmpp:forward:0"
DELAY_NS = "urn:xmpp:delay"
DEFAULT_PAGE = 50
MAX_PAGE_BYTES = 1024 * 1024  # of result stanzas in one answer (at least one result)
MAX_QUERY_ID = 256  # characters of a queryid echoed back
MAX_IDS = MAX_PAGE  # ids asked for at once
FIELDS = ("with", "start", "end", "before-id", "after-id", "ids")

_Q = f"{{{MAM_NS}}}"
_X = f"{{{DATA_NS}}}"
_R = f"{{{RSM_NS}}}"


def _bad(text: str) -> XmppError:
    return XmppError("bad-request", text, "modify")


def parse_time(value: str) -> int:
    """An XEP-0082 date-time as milliseconds since the epoch."""
    text = value.strip()
    if len(text) > 64:
        raise _bad("a date-time is at most 64 characters")
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _bad(f"{text[:40]!r} is not an XEP-0082 date-time "
                   "(such as 2026-12-01T10:00:00Z)") from None
    if when.tzinfo is None:
        raise _bad(f"{text[:40]!r} has no time zone (add Z for UTC)")
    return int(when.timestamp() * 1000)


def stamp(at_ms: int) -> str:
    when = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _form_fields(form: ET.Element) -> dict[str, list[str]]:
    if form.get("type", "submit") != "submit":
        raise _bad("the query form must be of type submit")
    fields: dict[str, list[str]] = {}
    for field in form.findall(_X + "field"):
        var = field.get("var", "")
        values = [v.text or "" for v in field.findall(_X + "value")]
        if var == "FORM_TYPE":
            if values != [MAM_NS]:
                raise _bad(f"FORM_TYPE must be {MAM_NS}")
            continue
        if var not in FIELDS:
            raise _bad(f"unknown field {var[:64]!r}: this archive filters by "
                       f"{', '.join(FIELDS)}")
        if var in fields:
            raise _bad(f"field {var!r} given twice")
        if var != "ids" and len(values) != 1:
            raise _bad(f"field {var!r} takes one value")
        fields[var] = values
    return fields


def _rsm(query: Query, rsm: ET.Element) -> Query:
    limit, after, before = query.max, query.after, query.before
    for child in rsm:
        name = child.tag[len(_R):] if child.tag.startswith(_R) else ""
        text = (child.text or "").strip()
        if name == "max":
            if not text.isdigit() or len(text) > 9:
                raise _bad("<max/> must be a whole number")
            limit = int(text)
        elif name == "after":
            if not text:
                raise _bad("<after/> needs an id")
            if after is not None:
                raise _bad("give after-id or a result-set <after/>, not both")
            after = text
        elif name == "before":
            if text and before:
                raise _bad("give before-id or a result-set <before/>, not both")
            before = text or before or ""
        elif name == "index":
            raise XmppError("feature-not-implemented",
                            "paging by index is not supported: page with after/before")
        else:
            raise _bad(f"unknown result-set element {child.tag[:80]!r}")
    if after is not None and before:
        raise _bad("ask for a page after an id or before one, not both")
    return Query(peer=query.peer, groupchat=False, start_ms=query.start_ms,
                 end_ms=query.end_ms, after=after, before=before, max=min(limit, MAX_PAGE),
                 ids=query.ids)


class Mam:
    def __init__(self, service: ServiceAPI, domains: Domains) -> None:
        self.service = service
        self.domains = domains

    def install(self, iq: ServerIq) -> None:
        """Answer MAM IQs to the account (and to the server, as the user's archive)."""
        for kind in ("server", "account"):
            iq.register(kind, MAM_NS, "get", self.on_get)
            iq.register(kind, MAM_NS, "set", self.on_set)
        # on the account, where XEP-0313 puts it, and on the server, where profanity
        # (0.13) looks for it: it discovers only the server and its items
        for kind in ("account", "server"):
            iq.features[kind] += [MAM_NS, MAM_EXTENDED, SID_NS]

    # --- IQ handlers (server_iq.Handler) -----------------------------------------------

    def on_get(self, conn: Session, el: ET.Element, payload: ET.Element,
               to: JID | None) -> Iq:
        reply = new_iq("result", el.get("id", ""))
        if payload.tag == _Q + "prefs":
            reply.xml.append(self._prefs())
        elif payload.tag == _Q + "query":
            reply.xml.append(self._form())
        else:
            raise XmppError("service-unavailable", "")
        return reply

    def on_set(self, conn: Session, el: ET.Element, payload: ET.Element,
               to: JID | None) -> Iq:
        assert conn.owner is not None
        reply = new_iq("result", el.get("id", ""))
        if payload.tag == _Q + "prefs":
            # everything is archived: the answer says so, whatever was asked
            reply.xml.append(self._prefs())
            return reply
        if payload.tag != _Q + "query":
            raise XmppError("service-unavailable", "")
        query_id = payload.get("queryid", "")
        if len(query_id) > MAX_QUERY_ID:
            raise _bad(f"a queryid is at most {MAX_QUERY_ID} characters")
        query = self.parse(payload)
        try:
            page = self.service.archive_query(conn.owner.address, query)
        except ArchiveError as exc:
            raise XmppError("item-not-found", str(exc)) from None
        page, results = self.within_bytes(conn, page, query, query_id)
        for data in results:
            conn.write(data)
        reply.xml.append(self.fin(page, query))
        return reply

    def within_bytes(self, conn: Session, page: Page, query: Query,
                     query_id: str) -> tuple[Page, list[bytes]]:
        """The page's results, serialised, cut to ``MAX_PAGE_BYTES`` (at least one): a
        page of long messages is sent in parts, never as one burst past what a client
        is given at once. Paging backwards keeps the newest, forwards the oldest, so
        the next page goes on from where this one stops."""
        items = list(page.items) if query.before is None else list(reversed(page.items))
        results: list[bytes] = []
        size = 0
        for entry in items:
            data = st.serialize(self.result(conn, entry, query_id))
            if results and size + len(data) > MAX_PAGE_BYTES:
                break
            results.append(data)
            size += len(data)
        dropped = len(items) - len(results)
        if not dropped:
            return page, results if query.before is None else results[::-1]
        if query.before is None:
            return Page(page.items[:len(results)], page.count, False, page.first_index), results
        return (Page(page.items[dropped:], page.count, False, page.first_index + dropped),
                results[::-1])

    # --- parsing --------------------------------------------------------------------

    def parse(self, payload: ET.Element) -> Query:
        forms = payload.findall(_X + "x")
        sets = payload.findall(_R + "set")
        if len(forms) > 1 or len(sets) > 1:
            raise _bad("a query carries at most one form and one result set")
        fields = _form_fields(forms[0]) if forms else {}
        peer = None
        if "with" in fields:
            try:
                jid = JID(fields["with"][0].strip())
            except InvalidJID:
                raise _bad(f"{fields['with'][0][:80]!r} is not a JID") from None
            # one-to-one history is kept per contact: anyone else has none
            peer = self.domains.address_of(jid) or f"\0{jid.bare}"
        ids = tuple(v.strip() for v in fields.get("ids", ()))
        if len(ids) > MAX_IDS:
            raise _bad(f"ask for at most {MAX_IDS} ids at once")
        query = Query(
            peer=peer, groupchat=False,
            start_ms=parse_time(fields["start"][0]) if "start" in fields else None,
            end_ms=parse_time(fields["end"][0]) if "end" in fields else None,
            after=(fields["after-id"][0].strip() or None) if "after-id" in fields else None,
            before=(fields["before-id"][0].strip() or None) if "before-id" in fields else None,
            max=DEFAULT_PAGE, ids=ids)
        return _rsm(query, sets[0]) if sets else _rsm(query, ET.Element(_R + "set"))

    # --- building ---------------------------------------------------------------------

    def result(self, conn: Session, entry: Entry, query_id: str) -> ET.Element:
        msg = ET.Element("{jabber:client}message", {"to": conn.jid.full, "from": conn.bare,
                                                    "id": secrets.token_hex(8)})
        result = ET.SubElement(msg, _Q + "result", {"id": entry.id})
        if query_id:
            result.set("queryid", query_id)
        forwarded = ET.SubElement(result, f"{{{FORWARD_NS}}}forwarded")
        ET.SubElement(forwarded, f"{{{DELAY_NS}}}delay", {"stamp": stamp(entry.at_ms)})
        contact = self.domains.contact(entry.peer)
        inner = ET.SubElement(forwarded, "{jabber:client}message", {
            "type": "chat",
            "from": conn.bare if entry.outgoing else contact,
            "to": contact if entry.outgoing else conn.bare,
            "id": entry.origin_id or entry.id})
        ET.SubElement(inner, "{jabber:client}body").text = entry.body or (
            RETRACTED if entry.act.startswith("retraction ") else "")
        if entry.act:
            add_archived_act(inner, entry.act, own=conn.bare, contact=contact,
                             body=entry.body)
        ET.SubElement(inner, f"{{{SID_NS}}}stanza-id", {"by": conn.bare, "id": entry.id})
        return msg

    @staticmethod
    def fin(page: Page, query: Query) -> ET.Element:
        fin = ET.Element(_Q + "fin")
        if page.complete:
            fin.set("complete", "true")
        rsm = ET.SubElement(fin, _R + "set")
        if page.items:
            ET.SubElement(rsm, _R + "first", {"index": str(page.first_index)}).text = page.first
            ET.SubElement(rsm, _R + "last").text = page.last
        ET.SubElement(rsm, _R + "count").text = str(page.count)
        return fin

    @staticmethod
    def _prefs() -> ET.Element:
        prefs = ET.Element(_Q + "prefs", {"default": "always"})
        ET.SubElement(prefs, _Q + "always")
        ET.SubElement(prefs, _Q + "never")
        return prefs

    @staticmethod
    def _form() -> ET.Element:
        query = ET.Element(_Q + "query")
        form = ET.SubElement(query, _X + "x", {"type": "form"})
        form_type = ET.SubElement(form, _X + "field", {"var": "FORM_TYPE", "type": "hidden"})
        ET.SubElement(form_type, _X + "value").text = MAM_NS
        kinds = {"with": "jid-single", "ids": "text-multi"}
        for var in FIELDS:
            ET.SubElement(form, _X + "field", {"var": var,
                                               "type": kinds.get(var, "text-single")})
        return query


__all__ = ["MAM_NS", "Mam", "parse_time"]
