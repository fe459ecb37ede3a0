"""The XMPP face of ParanoIM: the embedded c2s listener and the gateway.

The daemon needs only ``C2SServer``; the rest is re-exported for tests and
for the component mode that will share the gateway.
"""

from bridge.xmpp.c2s import DEFAULT_PORT, C2SServer
from bridge.xmpp.reader import Limits, StreamReader
from bridge.xmpp.stream import Timeouts
from bridge.xmpp.streamerror import StreamError
from bridge.xmpp.throttle import LoginThrottle, ThrottlePolicy

__all__ = [
    "DEFAULT_PORT",
    "C2SServer",
    "Limits",
    "LoginThrottle",
    "StreamError",
    "StreamReader",
    "ThrottlePolicy",
    "Timeouts",
]
