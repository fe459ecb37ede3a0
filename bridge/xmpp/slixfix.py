"""Workarounds for using slixmpp, a client library, on the server side.

Each entry names what it works around, so it can go when slixmpp changes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from slixmpp import Iq, Message
from slixmpp.features.feature_bind.stanza import Bind
from slixmpp.features.feature_session.stanza import Session
from slixmpp.plugins.xep_0030.stanza.info import DiscoInfo
from slixmpp.plugins.xep_0030.stanza.items import DiscoItems
from slixmpp.plugins.xep_0045 import stanza as muc_stanza
from slixmpp.plugins.xep_0184.stanza import Received, Request
from slixmpp.plugins.xep_0191.stanza import Block, BlockList, Unblock
from slixmpp.plugins.xep_0280.stanza import SentCarbon
from slixmpp.plugins.xep_0297.stanza import Forwarded
from slixmpp.stanza.roster import Roster
from slixmpp.xmlstream import register_stanza_plugin

_registered = False


def register_stanza_plugins() -> None:
    """Attach the plugin stanzas the server builds to slixmpp's stanza classes.

    slixmpp only registers a XEP's stanza classes when a client loads the
    plugin (``register_plugin('xep_0030')`` on a ``ClientXMPP``); a server that
    builds stanzas without any client object has to do it itself. The calls are
    idempotent and the same ones a slixmpp client makes, so a client running in
    the same process (the tests) sees no difference.
    """
    global _registered
    if _registered:
        return
    register_stanza_plugin(Iq, Roster)
    register_stanza_plugin(Iq, DiscoInfo)
    register_stanza_plugin(Iq, DiscoItems)
    register_stanza_plugin(Iq, Bind)
    register_stanza_plugin(Iq, Session)
    register_stanza_plugin(Iq, BlockList)
    register_stanza_plugin(Iq, Block)
    register_stanza_plugin(Iq, Unblock)
    register_stanza_plugin(Message, Request)
    register_stanza_plugin(Message, Received)
    register_stanza_plugin(Message, SentCarbon)
    register_stanza_plugin(SentCarbon, Forwarded)
    register_stanza_plugin(Forwarded, Message, iterable=True)
    muc_stanza.register_plugins()  # the module's own helper, as the xep_0045 plugin calls it
    _registered = True


def new_iq(stype: str, ident: str) -> Iq:
    """An ``Iq`` with the given id.

    slixmpp's ``Iq.__init__`` assigns a fresh id from its stream, and without a
    stream it falls back to ``"0"``; a server reply must carry the request's id.
    """
    iq = Iq(stype=stype)  # type: ignore[no-untyped-call]
    iq["id"] = ident
    return iq


def new_message(xml: ET.Element | None = None) -> Message:
    """A ``Message``, optionally wrapping ``xml``.

    slixmpp's ``Message.__init__`` carries no annotations, so every call from
    typed code is an untyped call; it is made here once.
    """
    return Message(xml=xml)  # type: ignore[no-untyped-call]
