"""Tor, opt-in: an onion service through the control port, SOCKS for every dial out.

The control protocol is spoken directly over asyncio (a few commands:
PROTOCOLINFO, AUTHCHALLENGE, AUTHENTICATE, ADD_ONION, DEL_ONION) rather than
through stem, whose controller is blocking and would need a thread per call.
ADD_ONION returns as soon as tor has the keys — it does not wait for the
descriptor to be published (stem's ``await_publication=False``), so it works
offline. Onions are not detached: tor removes them when this connection closes,
so a crashed daemon leaves nothing behind.

Authentication, strongest offered first: SAFECOOKIE (proves tor knows the cookie
before we reveal anything), COOKIE, HASHEDPASSWORD (when a password is given),
NULL. Every outbound connection goes through ``socks_connector`` with remote DNS
(rdns), so ``.onion`` and other names are resolved inside Tor, never locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp_socks import (
    ProxyConnectionError,
    ProxyConnector,
    ProxyError,
    ProxyTimeoutError,
    ProxyType,
)

from bridge.core.errors import RemoteProtocolError, UserError
from bridge.core.kkv import is_onion_host
from bridge.core.kkv_records import DEFAULT_PORT

__all__ = [
    "CONNECT_ERRORS",
    "PROXY_ERRORS",
    "OnionService",
    "OnionWithoutTorError",
    "TorController",
    "TorError",
    "check_dial_host",
    "describe_connect_error",
    "outbound_session",
    "parse_reply_line",
    "socks_connector",
]

LINE_LIMIT = 64 * 1024
# aiohttp-socks' errors derive from neither OSError nor aiohttp.ClientError:
# catch these wherever an outbound connection may fail.
PROXY_ERRORS: tuple[type[Exception], ...] = (ProxyError, ProxyConnectionError, ProxyTimeoutError)
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    *PROXY_ERRORS,
)
_SERVER_KEY = b"Tor safe cookie authentication server-to-controller hash"
_CLIENT_KEY = b"Tor safe cookie authentication controller-to-server hash"
_SERVICE_ID = re.compile(r"^[a-z2-7]{56}$")


class TorError(UserError):
    """Tor could not do what was asked; the message says what to check."""


class OnionWithoutTorError(UserError):
    """An .onion peer or endpoint was given while Tor is off."""


# --- the control protocol ----------------------------------------------------------------


def parse_reply_line(line: str) -> tuple[int, str, str]:
    """(status, separator, text) of one reply line: ``250-``, ``250+``, ``250 ``."""
    if len(line) < 4 or not line[:3].isdigit() or line[3] not in "- +":
        raise RemoteProtocolError(f"malformed control reply line {line[:80]!r}")
    return int(line[:3]), line[3], line[4:]


def quote(text: str) -> str:
    """A control-protocol QuotedString."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError("control strings cannot hold line breaks or NUL")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(ch, ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def parse_protocolinfo(lines: list[str]) -> tuple[set[str], Path | None, str]:
    """(auth methods, cookie file, tor version) from a PROTOCOLINFO reply."""
    methods: set[str] = set()
    cookie: Path | None = None
    version = ""
    for line in lines:
        if line.startswith("AUTH "):
            m = re.search(r"METHODS=(\S+)", line)
            if m:
                methods = set(m.group(1).split(","))
            c = re.search(r'COOKIEFILE="((?:[^"\\]|\\.)*)"', line)
            if c:
                cookie = Path(_unquote(c.group(1)))
        elif line.startswith("VERSION "):
            v = re.search(r'Tor="((?:[^"\\]|\\.)*)"', line)
            version = _unquote(v.group(1)) if v else ""
    return methods, cookie, version


@dataclass(frozen=True, slots=True)
class OnionService:
    service_id: str
    virtual_port: int
    target_host: str
    target_port: int
    private_key: str | None = None  # "ED25519-V3:..." only when asked to keep it

    @property
    def address(self) -> str:
        return f"{self.service_id}.onion"

    @property
    def url(self) -> str:
        """The base URL peers and senders dial (also the announced direct endpoint)."""
        return f"http://{self.address}:{self.virtual_port}"


class TorController:
    """One authenticated control connection; the onions it adds live as long as it does."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self.onions: dict[str, OnionService] = {}
        self.version = ""
        self.auth_method = ""

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 9051,
        *,
        password: str | None = None,
        cookie_path: Path | None = None,
        timeout: float = 10.0,
    ) -> TorController:
        """Connect and authenticate. ``cookie_path`` overrides the file tor names
        (when tor runs in another filesystem namespace)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=LINE_LIMIT), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise TorError(
                f"cannot reach Tor's control port at {host}:{port} ({exc}); is tor "
                "running with ControlPort set?"
            ) from exc
        ctl = cls(reader, writer, timeout)
        try:
            await ctl._authenticate(password, cookie_path)
        except BaseException:
            await ctl._close_transport()
            raise
        return ctl

    async def command(self, line: str) -> list[str]:
        """Send one command; return the text of its reply lines, or raise TorError."""
        if "\r" in line or "\n" in line:
            raise ValueError("one control command per call")
        async with self._lock:
            try:
                self._writer.write(line.encode() + b"\r\n")
                await self._writer.drain()
                return await asyncio.wait_for(
                    self._read_reply(line.split(" ", 1)[0]), self._timeout
                )
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                raise TorError(
                    f"Tor's control connection failed during "
                    f"{line.split(' ', 1)[0]}: {exc or type(exc).__name__}"
                ) from exc

    async def _read_reply(self, verb: str) -> list[str]:
        texts: list[str] = []
        while True:
            raw = await self._reader.readline()
            if not raw:
                raise TorError(f"tor closed the control connection during {verb}")
            status, sep, text = parse_reply_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if 600 <= status < 700:
                continue  # an asynchronous event; we subscribe to none
            texts.append(text)
            if sep == "+":  # a data block, ending with a lone "."
                while (
                    data := (await self._reader.readline())
                    .decode("utf-8", "replace")
                    .rstrip("\r\n")
                ) != ".":
                    if not data and self._reader.at_eof():
                        raise TorError("tor closed the control connection mid-reply")
                    texts.append(data)
            elif sep == " ":
                if status // 100 != 2:
                    raise TorError(f"tor refused {verb}: {status} {text}")
                return texts

    async def _authenticate(self, password: str | None, cookie_path: Path | None) -> None:
        methods, cookie_file, self.version = parse_protocolinfo(
            await self.command("PROTOCOLINFO 1")
        )
        cookie_file = cookie_path or cookie_file
        if password is not None and "HASHEDPASSWORD" in methods:
            self.auth_method = "HASHEDPASSWORD"
            await self.command(f"AUTHENTICATE {quote(password)}")
        elif "SAFECOOKIE" in methods and cookie_file is not None:
            self.auth_method = "SAFECOOKIE"
            await self._safecookie(_read_cookie(cookie_file))
        elif "COOKIE" in methods and cookie_file is not None:
            self.auth_method = "COOKIE"
            await self.command(f"AUTHENTICATE {_read_cookie(cookie_file).hex()}")
        elif "NULL" in methods:
            self.auth_method = "NULL"
            await self.command("AUTHENTICATE")
        else:
            need = "a control password" if "HASHEDPASSWORD" in methods else "a cookie file"
            raise TorError(
                f"Tor's control port wants {need} (methods offered: "
                f"{', '.join(sorted(methods)) or 'none'})"
            )

    async def _safecookie(self, cookie: bytes) -> None:
        client_nonce = secrets.token_bytes(32)
        lines = await self.command(f"AUTHCHALLENGE SAFECOOKIE {client_nonce.hex()}")
        m = re.search(r"SERVERHASH=([0-9A-Fa-f]{64}) SERVERNONCE=([0-9A-Fa-f]{64})", lines[-1])
        if not m:
            raise TorError("tor's AUTHCHALLENGE reply is malformed")
        server_hash, server_nonce = bytes.fromhex(m.group(1)), bytes.fromhex(m.group(2))
        msg = cookie + client_nonce + server_nonce
        expected = hmac.new(_SERVER_KEY, msg, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, server_hash):
            raise TorError(
                "the control port does not know Tor's cookie: it is not the tor "
                "this cookie file belongs to"
            )
        await self.command("AUTHENTICATE " + hmac.new(_CLIENT_KEY, msg, hashlib.sha256).hexdigest())

    async def add_onion(
        self,
        target_port: int,
        *,
        virtual_port: int = DEFAULT_PORT,
        target_host: str = "127.0.0.1",
        key: str | None = None,
        keep_key: bool = False,
    ) -> OnionService:
        """A v3 onion service forwarding ``virtual_port`` to ``target_host:target_port``.

        ``key`` ("ED25519-V3:<base64>") reuses an address; without it tor makes a
        new one, and its private key is discarded unless ``keep_key``.
        """
        if not (0 < target_port < 65536 and 0 < virtual_port < 65536):
            raise ValueError("ports must be 1..65535")
        if not re.fullmatch(r"[0-9A-Za-z.:\-\[\]]+", target_host):
            raise ValueError("target host must be an address or a plain host name")
        if key is not None and not re.fullmatch(r"ED25519-V3:[A-Za-z0-9+/=]+", key):
            raise ValueError("key must be 'ED25519-V3:<base64>'")
        spec = key or "NEW:ED25519-V3"
        flags = "" if keep_key or key else " Flags=DiscardPK"
        lines = await self.command(
            f"ADD_ONION {spec}{flags} Port={virtual_port},{target_host}:{target_port}"
        )
        fields = dict(ln.split("=", 1) for ln in lines if "=" in ln)
        service_id = fields.get("ServiceID", "")
        if not _SERVICE_ID.match(service_id):
            raise TorError(f"tor answered ADD_ONION without a v3 service id: {lines}")
        onion = OnionService(
            service_id,
            virtual_port,
            target_host,
            target_port,
            fields.get("PrivateKey") if keep_key else None,
        )
        self.onions[service_id] = onion
        return onion

    async def remove_onion(self, service_id: str) -> None:
        self.onions.pop(service_id, None)
        await self.command(f"DEL_ONION {service_id}")

    async def close(self) -> None:
        """Remove the onions this controller made, then close the connection."""
        for sid in list(self.onions):
            with contextlib.suppress(TorError):
                await self.remove_onion(sid)
        await self._close_transport()

    async def _close_transport(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> TorController:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _read_cookie(path: Path) -> bytes:
    try:
        cookie = Path(path).read_bytes()
    except OSError as exc:
        raise TorError(
            f"cannot read Tor's control cookie {path} ({exc.strerror}); run as a "
            "user who may read it (Debian: the debian-tor group)"
        ) from exc
    if len(cookie) != 32:
        raise TorError(f"Tor's control cookie {path} is not 32 bytes")
    return cookie


# --- outbound connections ------------------------------------------------------------------


def socks_connector(
    socks_host: str = "127.0.0.1",
    socks_port: int = 9050,
    *,
    username: str | None = None,
    password: str | None = None,
    **kwargs: Any,
) -> ProxyConnector:
    """An aiohttp connector dialling through SOCKS5 with remote name resolution.

    rdns=True sends host names to the proxy unresolved, so Tor resolves them
    (``.onion`` names can only be resolved there, and a local lookup would leak
    whom we are about to contact). With Tor, distinct ``username``/``password``
    pairs get distinct circuits (IsolateSOCKSAuth, on by default).
    """
    return ProxyConnector(
        proxy_type=ProxyType.SOCKS5,
        host=socks_host,
        port=socks_port,
        username=username,
        password=password,
        rdns=True,
        **kwargs,
    )


def outbound_session(socks: tuple[str, int] | None = None, **kwargs: Any) -> aiohttp.ClientSession:
    """The one ClientSession for peer links and direct delivery: through Tor when
    ``socks`` is (host, port), direct otherwise. No cookies are kept between peers."""
    connector = socks_connector(*socks) if socks is not None else aiohttp.TCPConnector()
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), **kwargs)


def check_dial_host(host: str, *, tor: bool) -> None:
    """Refuse ``.onion`` hosts unless Tor is on (without it they cannot be reached and
    the lookup would leak the name to the local resolver)."""
    if is_onion_host(host) and not tor:
        raise OnionWithoutTorError(f"{host} is a Tor onion address; enable Tor to connect to it")


def describe_connect_error(exc: BaseException) -> str:
    """A sentence a person can act on for a failed outbound connection."""
    if isinstance(exc, ProxyConnectionError):
        return f"cannot reach the SOCKS proxy; is Tor running? ({exc})"
    if isinstance(exc, ProxyTimeoutError):
        return "the SOCKS proxy did not answer in time"
    if isinstance(exc, ProxyError):
        return f"the SOCKS proxy could not connect to the destination: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"the connection failed: {exc or type(exc).__name__}"
    if isinstance(exc, TimeoutError):
        return "the connection timed out"
    return str(exc) or type(exc).__name__
