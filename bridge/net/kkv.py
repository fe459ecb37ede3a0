"""The kkv-style HTTP endpoints (the asyncio shell); the RAM inbox behind them is
bridge.net.kkv_inbox.

The protocol checks live in bridge.core.kkv; this module reads bounded bodies,
maps each refusal to an HTTP status with a JSON ``{"error": ...}`` body, keeps
the inbox, and hands every envelope that arrives to whoever subscribed with
``inbox.on_envelope`` (the node, which then treats it like gossip).

The read endpoints (/get_msg, /read_msg, /del_msg) answer only requests whose
*transport* peer is a loopback address, never trusting headers. An onion
service forwards remote clients from 127.0.0.1, so the port Tor forwards to
must be registered with ``server.mark_onion_port(port)``: requests arriving on
it count as remote whatever their peer address.

The direct-delivery client is bridge.net.kkv_client (re-exported here).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bridge import __version__
from bridge.core import checks, kkv, kkv_records
from bridge.core.envelope import MAX_ENVELOPE_SIZE
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    ExpiredError,
    FromFutureError,
    MalformedError,
    OversizeError,
    ParanoimError,
    WeakKeyError,
    WeakProofOfWorkError,
)
from bridge.core.peers import is_loopback_host
from bridge.net.kkv_client import DirectDeliveryError, deliver_direct
from bridge.net.kkv_inbox import InboxFullError, InboxMessage, KkvInbox

__all__ = [
    "DirectDeliveryError",
    "InboxMessage",
    "KkvInbox",
    "KkvServer",
    "KkvSettings",
    "add_kkv_routes",
    "deliver_direct",
    "kkv_routes",
]

log = logging.getLogger(__name__)

PROTOCOL = "paranoim-kkv"
# --- the server ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KkvSettings:
    max_messages: int = kkv_records.DEFAULT_MAX_MESSAGES  # used when add_kkv_routes makes the inbox
    pow_bits: int = kkv_records.DEFAULT_BITS
    challenge_ttl: int = kkv_records.DEFAULT_CHALLENGE_TTL
    session_ttl: int = kkv_records.DEFAULT_SESSION_TTL
    max_pending: int = kkv_records.DEFAULT_MAX_PENDING
    envelope_base_bits: int = checks.DEFAULT_BASE_BITS
    prefix: str = ""  # e.g. "/kkv" when the node's app already has a /status


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Most specific first: the first isinstance match decides the status.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (OversizeError, 413),
    (kkv_records.ReplayedChallengeError, 409),
    (kkv_records.UnknownSessionError, 404),
    (ExpiredError, 410),
    (FromFutureError, 400),
    (WeakProofOfWorkError, 403),
    (BadSignatureError, 403),
    (WeakKeyError, 403),
    (DecryptionError, 403),
    (MalformedError, 400),
    (kkv_records.KkvBusyError, 503),
    (InboxFullError, 503),
)


def _status_of(exc: BaseException) -> int:
    for typ, status in _STATUS:
        if isinstance(exc, typ):
            return status
    return 400


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _peer_is_loopback(request: web.Request) -> bool:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peer, tuple) or not peer:
        return False  # unix sockets and unknown transports are not trusted
    try:
        ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _host_is_local(request: web.Request) -> bool:
    # A page on a hostile site may resolve its own name to 127.0.0.1 (DNS
    # rebinding) and read the inbox same-origin; such requests carry its name.
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return is_loopback_host(host)


class KkvServer:
    """The endpoints over one KkvServerState and one inbox. A new domain key per instance."""

    def __init__(
        self,
        inbox: KkvInbox,
        settings: KkvSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.settings = settings or KkvSettings()
        self.clock = clock
        self.started = time.monotonic()
        self.state = kkv.KkvServerState(
            secrets.token_bytes(32),
            bits=self.settings.pow_bits,
            challenge_ttl=self.settings.challenge_ttl,
            session_ttl=self.settings.session_ttl,
            max_pending=self.settings.max_pending,
            max_ciphertext=MAX_ENVELOPE_SIZE + 16,
        )
        self.onion_ports: set[int] = set()

    def mark_onion_port(self, port: int) -> None:
        """Requests arriving on local ``port`` come through Tor: never treat them as local."""
        self.onion_ports.add(port)

    def now(self) -> int:
        return int(self.clock())

    def routes(self, *, public: bool = True, local: bool = True) -> list[web.RouteDef]:
        """Route definitions: the public endpoints, the local-only ones, or both.

        With Tor, serve ``local=False`` on the app the onion forwards to and the
        local ones (``public=False``) on a loopback-only app.
        """
        p = self.settings.prefix.rstrip("/")
        table = [
            ("GET", "/status", self.status, False),
            ("GET", "/get_domain_pk", self.get_domain_pk, False),
            ("POST", "/pow", self.pow, False),
            ("POST", "/exchange_keys", self.exchange_keys, False),
            ("POST", "/msg", self.msg, False),
            ("POST", "/get_msg", self.get_msg, True),
            ("POST", "/read_msg", self.read_msg, True),
            ("POST", "/del_msg", self.del_msg, True),
        ]
        out: list[web.RouteDef] = []
        for method, path, handler, is_local in table:
            if not (local if is_local else public):
                continue
            out.append(web.route(method, p + path, self._guard(handler, local=is_local)))
            out.append(web.route("*", p + path, self._wrong_method(method)))
        return out

    # --- plumbing ------------------------------------------------------------------------

    def _wrong_method(self, allowed: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            resp = error_response(405, f"{request.path} accepts {allowed} only")
            resp.headers["Allow"] = allowed
            return resp

        return handler

    def _guard(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], *, local: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if local:
                sock = request.transport.get_extra_info("sockname") if request.transport else None
                via_tor = isinstance(sock, tuple) and len(sock) > 1 and sock[1] in self.onion_ports
                if via_tor or not _peer_is_loopback(request):
                    return error_response(
                        403, "this endpoint answers only requests from this machine"
                    )
                if not _host_is_local(request):
                    return error_response(
                        403,
                        "the Host header must name this machine (localhost or a loopback address)",
                    )
            self.inbox.purge(self.now())  # expired envelopes free their slots first
            try:
                return await handler(request)
            except _Refusal as exc:
                return error_response(exc.status, str(exc))
            except ParanoimError as exc:
                return error_response(_status_of(exc), str(exc))
            except Exception:
                # A bug, not the client's fault; still answer in the documented shape.
                log.exception("kkv endpoint %s failed", request.path)
                return error_response(500, "internal error; the request was not processed")

        return guarded

    async def _body(self, request: web.Request, limit: int) -> bytes:
        """The request body, refused before reading when larger than ``limit``."""
        if request.content_type != "application/json":
            # Also keeps browsers' no-preflight "simple" cross-site POSTs out.
            raise _Refusal(415, "the body must be sent as application/json")
        if request.content_length is not None and request.content_length > limit:
            raise _Refusal(413, f"request body of {request.content_length} bytes exceeds {limit}")
        buf = bytearray()
        while chunk := await request.content.read(16384):
            buf += chunk
            if len(buf) > limit:
                raise _Refusal(413, f"request body exceeds {limit} bytes")
        return bytes(buf)

    # --- public endpoints ------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.StreamResponse:
        # Uptime in whole minutes: enough for health, too coarse to time a restart
        # against other events an observer of the onion may see.
        return web.json_response(
            {
                "service": PROTOCOL,
                "protocol": kkv_records.VERSION,
                "version": __version__,
                "uptime": int(time.monotonic() - self.started) // 60 * 60,
                "inbox": {
                    "count": len(self.inbox),
                    "cap": self.inbox.max_messages,
                    "full": self.inbox.full,
                },
                "pow_bits": self.state.bits,
                "envelope_base_bits": self.settings.envelope_base_bits,
                "challenge_ttl": self.state.challenge_ttl,
            }
        )

    async def get_domain_pk(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"domain_pk": kkv_records.b64(self.state.domain_pk)})

    async def pow(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, kkv_records.SMALL_BODY_LIMIT)
        obj = kkv_records.parse_json_object(body, {"client_pk": str})
        client_pk = kkv_records.unb64(obj["client_pk"], 32, "client_pk")
        if self.inbox.full:  # say so before the client spends work
            raise InboxFullError(
                f"the inbox is full ({self.inbox.max_messages} messages); "
                "try again later or send through the network"
            )
        resp = self.state.issue(client_pk, self.now(), secrets.token_bytes(kkv_records.RANDOM_SIZE))
        return web.json_response(resp.to_json())

    async def exchange_keys(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, kkv_records.SMALL_BODY_LIMIT)
        req = kkv_records.ExchangeRequest.from_json(body)
        # No await between the checks and the state update: each exchange is atomic.
        offer = self.state.exchange(
            req, self.now(), secrets.token_bytes(kkv_records.SESSION_ID_SIZE),
            secrets.token_bytes(32),
        )
        return web.json_response(offer.to_json())

    async def msg(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, kkv_records.MSG_BODY_LIMIT)
        req = kkv_records.MessageRequest.from_json(body, self.state.max_ciphertext)
        if self.inbox.full:
            raise InboxFullError(
                f"the inbox is full ({self.inbox.max_messages} messages); "
                "try again later or send through the network"
            )
        now = self.now()
        opened = self.state.open(req, now)
        try:
            env = checks.check_envelope(
                opened.envelope, now=now, base_bits=self.settings.envelope_base_bits
            )
        except ParanoimError as exc:
            raise _Refusal(422, f"the envelope was refused: {exc}") from None
        stored = self.inbox.add(env.raw, opened.client_pk, now)
        if stored:
            await self.inbox.dispatch(env.raw)
        return web.json_response({"stored": stored, "duplicate": not stored, "id": env.id.hex()})

    # --- local endpoints -------------------------------------------------------------------

    def _pick(self, body: bytes) -> tuple[int, InboxMessage]:
        obj = kkv_records.parse_json_object(body, {"index": int, "id": str},
                                            optional=frozenset({"id"}))
        index = obj["index"]
        expect: bytes | None = None
        if "id" in obj:
            try:
                expect = bytes.fromhex(obj["id"])
            except ValueError:
                raise _Refusal(400, "field 'id' must be hexadecimal") from None
        try:
            return index, self.inbox.pick(index, expect)
        except LookupError as exc:
            raise _Refusal(404, str(exc)) from None
        except ValueError as exc:
            raise _Refusal(409, str(exc)) from None

    async def get_msg(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, kkv_records.SMALL_BODY_LIMIT)
        if body.strip() in (b"", b"{}"):
            return web.json_response(
                {
                    "count": len(self.inbox),
                    "cap": self.inbox.max_messages,
                    "messages": [m.to_json(i) for i, m in enumerate(self.inbox.messages)],
                }
            )
        index, m = self._pick(body)
        return web.json_response({"count": len(self.inbox), "message": m.to_json(index)})

    async def read_msg(self, request: web.Request) -> web.StreamResponse:
        index, m = self._pick(await self._body(request, kkv_records.SMALL_BODY_LIMIT))
        m.read = True
        return web.json_response({"index": index, "id": m.id.hex(), "read": True})

    async def del_msg(self, request: web.Request) -> web.StreamResponse:
        index, m = self._pick(await self._body(request, kkv_records.SMALL_BODY_LIMIT))
        self.inbox.messages.remove(m)
        return web.json_response({"deleted": index, "id": m.id.hex(), "count": len(self.inbox)})


def kkv_routes(inbox: KkvInbox, settings: KkvSettings | None = None) -> list[web.RouteDef]:
    """The endpoints as aiohttp route definitions (a fresh server key for each call)."""
    return KkvServer(inbox, settings).routes()


def add_kkv_routes(
    app: web.Application,
    inbox: KkvInbox | None = None,
    settings: KkvSettings | None = None,
    *,
    local: bool = True,
) -> KkvServer:
    """Serve the kkv endpoints on ``app``; returns the server (its inbox is ``.inbox``).

    ``app`` should be created with ``client_max_size`` of at least
    ``kkv_records.MSG_BODY_LIMIT``; the handlers bound every body themselves as well.
    """
    settings = settings or KkvSettings()
    server = KkvServer(inbox or KkvInbox(settings.max_messages), settings)
    app.add_routes(server.routes(local=local))
    return server
