"""The local control channel: how commands reach a running daemon.

Three parts. ``Operations`` is what the commands can do (identities, vanity jobs,
invitations, contacts, peers, passphrase, stop), written once over the service
and returning plain JSON-able dicts, so a command gives the same answer whether
the daemon runs or the key file is opened directly. ``serve_control`` publishes
the operations as JSON over HTTP on a 0600 Unix socket in the data directory
(127.0.0.1 TCP when the path is too long for a socket), each request carrying
the daemon's per-start access token. ``ControlClient`` is the other end.

Which daemon runs is told by the runtime file (pid, ports, access token; 0600)
together with the data directory's lock, held by the daemon for its lifetime:
a runtime file whose pid is dead or whose lock is free is stale and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from bridge.config import DEFAULT_P2P_PORT, ConfigError, host_port
from bridge.core.errors import UserError
from bridge.events import ContactInfo, IdentityInfo
from bridge.paths import control_socket, lock_file, runtime_file
from bridge.store.keystore import write_private

try:
    from bridge.xmpp.jids import Domains
except ImportError:  # pragma: no cover - a build without the XMPP face
    @dataclass(frozen=True, slots=True)
    class Domains:  # type: ignore[no-redef]
        server: str = "localhost"

        def user(self, username: str) -> str:
            return f"{username}@{self.server}"

        def contact(self, address: str) -> str:
            return f"{address}@p2p.{self.server}"

if TYPE_CHECKING:
    from bridge.service import Service

PREFIX = "/api/control"
TOKEN_HEADER = "Authorization"  # noqa: S105 - a header name
Json = dict[str, Any]


class DaemonNotRunningError(UserError):
    """No daemon runs for this data directory (or it does not answer)."""


class AlreadyRunningError(UserError):
    """A daemon already runs for this data directory."""


# --- the runtime file and the data directory's lock -------------------------------


@dataclass(frozen=True, slots=True)
class Runtime:
    pid: int
    token: str
    control: str  # "unix:/path" or "tcp:127.0.0.1:PORT"
    doc: Json

    @classmethod
    def read(cls, data_dir: Path) -> Runtime | None:
        """The runtime file's content, or None when absent, unreadable or stale."""
        try:
            doc = json.loads(runtime_file(data_dir).read_text(encoding="utf-8"))
            rt = cls(pid=int(doc["pid"]), token=str(doc["access_token"]),
                     control=str(doc["control"]), doc=doc)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return rt if pid_alive(rt.pid) else None


def write_runtime(data_dir: Path, doc: Json) -> None:
    write_private(runtime_file(data_dir), json.dumps(doc, indent=1).encode())


def remove_runtime(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        runtime_file(data_dir).unlink()


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DataDirLock:
    """An exclusive flock on the data directory: the daemon's for its lifetime,
    a command's for the moment it edits the key file without a daemon."""

    def __init__(self, data_dir: Path) -> None:
        self.path = lock_file(data_dir)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def running_daemon(data_dir: Path) -> Runtime | None:
    """The live daemon's runtime record, if one runs for ``data_dir``."""
    rt = Runtime.read(data_dir)
    if rt is None or not lock_file(data_dir).exists():
        return None
    probe = DataDirLock(data_dir)
    if probe.try_acquire():  # nobody holds the lock: the file is a leftover
        probe.release()
        return None
    return rt


# --- what the commands can do -------------------------------------------------------


def identity_json(info: IdentityInfo, domains: Domains) -> Json:
    return {"address": info.address, "nick": info.nick, "username": info.username,
            "jid": domains.user(info.username), "password": info.xmpp_password,
            "fingerprint": info.fingerprint}


def contact_json(info: ContactInfo, domains: Domains) -> Json:
    return {"owner": info.owner, "address": info.address, "petname": info.petname,
            "state": str(info.state), "jid": domains.contact(info.address),
            "fingerprint": info.fingerprint}


class Operations:
    """The commands' verbs over one service (the daemon's, or a short-lived one)."""

    def __init__(self, service: Service, *, domain: str = "localhost",
                 status: Callable[[], Json] | None = None,
                 stop: Callable[[], None] | None = None) -> None:
        self.service = service
        self.domains = Domains(domain)
        self._status = status or (lambda: {})
        self._stop = stop

    def pick(self, who: str) -> IdentityInfo:
        """An identity by address, username, nickname or address prefix; "" = the first."""
        idents: list[IdentityInfo] = self.service.identities()
        if not idents:
            raise UserError("there is no identity yet: create one with `paranoim id new NICK`")
        if not who:
            return idents[0]
        w = who.strip().lower()
        tests: list[Callable[[IdentityInfo], bool]] = [
            lambda i: i.address == w, lambda i: i.username == w,
            lambda i: i.nick.lower() == w, lambda i: i.address.startswith(w)]
        for test in tests:
            found = [i for i in idents if test(i)]
            if len(found) == 1:
                return found[0]
        names = ", ".join(i.nick for i in idents)
        raise UserError(f"no single identity matches '{who}'; the identities are: {names}")

    def status(self) -> Json:
        h = self.service.health()
        return {**self._status(), "identities": len(self.service.identities()),
                "peers": h.peers, "stored_envelopes": h.stored_envelopes,
                "stored_bytes": h.stored_bytes, "difficulty_bits": h.difficulty_bits,
                "storage": h.storage, "tor": h.tor, "recent_errors": h.recent_errors}

    def identities(self) -> list[Json]:
        return [identity_json(i, self.domains) for i in self.service.identities()]

    async def create_identity(self, nick: str) -> Json:
        return identity_json(await self.service.create_identity(nick), self.domains)

    def start_vanity(self, nick: str, prefix: str) -> Json:
        attempts, seconds = self.service.vanity_estimate(prefix)
        job = self.service.start_vanity(prefix, nick)
        return {"job": job.id, "prefix": job.prefix, "expected_attempts": attempts,
                "expected_seconds": seconds}

    def vanity(self, job_id: str) -> Json:
        job = self.service.vanity_job(job_id)
        if job is None:
            raise UserError(f"there is no vanity search {job_id}")
        p = job.progress()
        out: Json = {"attempts": p.attempts, "rate": p.rate, "elapsed": p.elapsed,
                     "expected_attempts": p.expected_attempts, "done": p.done,
                     "cancelled": p.cancelled, "error": p.error, "identity": None}
        if p.done and p.address:
            out["identity"] = identity_json(self.service.identity(p.address), self.domains)
        return out

    def cancel_vanity(self, job_id: str) -> Json:
        job = self.service.vanity_job(job_id)
        if job is not None:
            job.cancel()
        return {}

    def invite(self, who: str) -> Json:
        ident = self.pick(who)
        return {"identity": identity_json(ident, self.domains),
                "link": self.service.invite_link(ident.address)}

    def add_contact(self, who: str, link: str, name: str) -> Json:
        ident = self.pick(who)
        return contact_json(self.service.add_contact(ident.address, link, name), self.domains)

    def contacts(self, who: str) -> list[Json]:
        ident = self.pick(who)
        return [contact_json(c, self.domains) for c in self.service.contacts(ident.address)]

    def peers(self) -> list[Json]:
        return [dict(p) for p in self.service.health().peers]

    def add_peer(self, peer: str) -> Json:
        try:
            peer = host_port("peer", peer)
        except ConfigError:
            raise UserError(f"'{peer}' is not host:port, such as 192.0.2.7:"
                            f"{DEFAULT_P2P_PORT}") from None
        self.service.add_peer(peer)
        return {}

    def remove_peer(self, peer: str) -> Json:
        self.service.remove_peer(peer)
        return {}

    async def set_passphrase(self, passphrase: str | None) -> Json:
        # Argon2id takes a second or two: off the event loop.
        await asyncio.to_thread(self.service.set_passphrase, passphrase)
        return {"encrypted": bool(passphrase)}

    def stop(self) -> Json:
        if self._stop is None:
            raise UserError("this daemon cannot be stopped from here")
        asyncio.get_running_loop().call_soon(self._stop)
        return {}


# --- the server side ---------------------------------------------------------------

_OPS: web.AppKey[Operations] = web.AppKey("ops", Operations)
_TOKEN: web.AppKey[str] = web.AppKey("token", str)


def _answer(fn: Callable[[Operations, web.Request, Json], Any]) -> Callable[
        [web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        body: Json = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the request body is not JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "the request body must be an object"},
                                         status=400)
        try:
            result = fn(request.app[_OPS], request, body)
            if asyncio.iscoroutine(result):
                result = await result
        except UserError as exc:
            return web.json_response({"error": str(exc), "kind": type(exc).__name__}, status=400)
        return web.json_response({"result": result})
    return handler


@web.middleware
async def _token_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    given = request.headers.get(TOKEN_HEADER, "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, request.app[_TOKEN].encode()):
        return web.json_response({"error": "wrong or missing access token"}, status=403)
    response: web.StreamResponse = await handler(request)
    return response


def control_app(ops: Operations, token: str) -> web.Application:
    app = web.Application(middlewares=[_token_middleware], client_max_size=64 * 1024)
    app[_OPS] = ops
    app[_TOKEN] = token
    def q(r: web.Request, key: str) -> str:
        return r.query.get(key, "")

    Route = Callable[[Operations, web.Request, Json], Any]
    routes: list[tuple[str, str, Route]] = [
        ("GET", "/status", lambda o, r, b: o.status()),
        ("GET", "/identities", lambda o, r, b: o.identities()),
        ("POST", "/identities", lambda o, r, b: o.create_identity(str(b.get("nick", "")))),
        ("POST", "/vanity", lambda o, r, b: o.start_vanity(str(b.get("nick", "")),
                                                           str(b.get("prefix", "")))),
        ("GET", "/vanity/{job}", lambda o, r, b: o.vanity(r.match_info["job"])),
        ("DELETE", "/vanity/{job}", lambda o, r, b: o.cancel_vanity(r.match_info["job"])),
        ("GET", "/invite", lambda o, r, b: o.invite(q(r, "who"))),
        ("GET", "/contacts", lambda o, r, b: o.contacts(q(r, "who"))),
        ("POST", "/contacts", lambda o, r, b: o.add_contact(
            str(b.get("who", "")), str(b.get("link", "")), str(b.get("name", "")))),
        ("GET", "/peers", lambda o, r, b: o.peers()),
        ("POST", "/peers", lambda o, r, b: o.add_peer(str(b.get("peer", "")))),
        ("DELETE", "/peers", lambda o, r, b: o.remove_peer(q(r, "peer"))),
        ("POST", "/passphrase", lambda o, r, b: o.set_passphrase(b.get("passphrase") or None)),
        ("POST", "/stop", lambda o, r, b: o.stop()),
    ]
    for method, path, fn in routes:
        app.router.add_route(method, PREFIX + path, _answer(fn))
    return app


async def serve_control(ops: Operations, token: str, data_dir: Path) -> tuple[
        web.AppRunner, str]:
    """Start the control server; returns the runner and its "unix:…"/"tcp:…" address."""
    runner = web.AppRunner(control_app(ops, token), access_log=None, shutdown_timeout=2)
    await runner.setup()
    path = control_socket(data_dir)
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a leftover of a daemon that died; the lock says none runs
        old = os.umask(0o177)  # the socket is created 0600, never wider for a moment
        try:
            site: web.BaseSite = web.UnixSite(runner, str(path))
            await site.start()
        finally:
            os.umask(old)
        return runner, f"unix:{path}"
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"tcp:127.0.0.1:{port}"


# --- the client side ---------------------------------------------------------------


class ControlClient:
    """Calls a running daemon's operations; raises UserError with its message."""

    def __init__(self, runtime: Runtime, timeout: float = 30.0) -> None:
        self.runtime = runtime
        self.timeout = timeout
        kind, _, where = runtime.control.partition(":")
        if kind == "unix":
            self._base = "http://localhost" + PREFIX
            self._connector: Callable[[], aiohttp.BaseConnector] = (
                lambda: aiohttp.UnixConnector(path=where))
        else:
            self._base = f"http://{where}{PREFIX}"
            self._connector = aiohttp.TCPConnector

    async def call(self, method: str, path: str, body: Json | None = None,
                   params: dict[str, str] | None = None) -> Any:
        headers = {TOKEN_HEADER: f"Bearer {self.runtime.token}"}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(connector=self._connector(), timeout=timeout) as s, \
                    s.request(method, self._base + path, json=body, params=params,
                              headers=headers) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise DaemonNotRunningError(
                f"the daemon (pid {self.runtime.pid}) does not answer its control channel "
                f"({exc or type(exc).__name__}); stop it and start it again") from None
        if "error" in answer:
            raise UserError(str(answer["error"]))
        return answer["result"]


def wait_for_lock_or_daemon(data_dir: Path, timeout: float = 15.0) -> tuple[
        DataDirLock | None, Runtime | None]:
    """Either the data directory's lock (no daemon) or the running daemon's record.

    A daemon that is starting holds the lock before it writes its runtime file,
    and another command may hold the lock for a moment: wait for either to settle.
    """
    deadline = time.monotonic() + timeout
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    while True:
        rt = running_daemon(data_dir)
        if rt is not None:
            return None, rt
        lock = DataDirLock(data_dir)
        if lock.try_acquire():
            return lock, None
        if time.monotonic() > deadline:
            raise UserError(f"{data_dir} is locked by another ParanoIM process that does not "
                            "answer; wait for it to finish or stop it")
        time.sleep(0.05)
