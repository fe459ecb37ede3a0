"""The local control channel: how commands reach a running daemon.

``serve_control`` publishes ``bridge.operations.Operations`` as JSON over HTTP
on a 0600 Unix socket in the data directory (127.0.0.1 TCP when the path is too
long for a socket), each request carrying the daemon's per-start control token
(its own secret: the web UI's access token does not open this channel, nor this
token the web UI).
``ControlClient`` is the other end. Both read the one table of verbs
(``bridge.operations.VERBS``): which method, path and arguments each verb has.

A refused request comes back as its message and its *kind*, the name of its
error class; the client raises the same class again, so a command fails with the
same exit code and message whether the daemon runs or not. Only the classes in
``ERROR_KINDS`` travel; the client looks a kind up in that table and nowhere
else (an unknown one is a plain ``UserError``), so the socket cannot name code
to run. An error the daemon did not expect comes back as ``DaemonFailedError``.

Which daemon runs is told by the runtime file (pid, ports, control token; 0600)
together with the data directory's lock, held by the daemon for its lifetime:
a runtime file whose pid is dead or whose lock is free is stale and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge.config import ConfigError
from bridge.core.errors import (
    BadAddressError,
    BadInviteError,
    BadPeerError,
    ParanoimError,
    PowCancelledError,
    UserError,
)
from bridge.core.vanity import VanityPrefixError
from bridge.operations import VERBS, Json, Operations, perform
from bridge.paths import control_socket, lock_file, runtime_file
from bridge.ports import PortInUseError
from bridge.store.keystore import (
    KeystoreError,
    PassphraseNeededError,
    WrongPassphraseError,
    write_private,
)

log = logging.getLogger(__name__)
PREFIX = "/api/control"
TOKEN_HEADER = "Authorization"  # noqa: S105 - a header name
UNEXPECTED = "unexpected"  # the kind of an error the daemon did not expect


class DaemonNotRunningError(UserError):
    """No daemon runs for this data directory (or it does not answer)."""


class AlreadyRunningError(UserError):
    """A daemon already runs for this data directory."""


class DaemonFailedError(ParanoimError):
    """The daemon failed in a way it did not expect; its log has the details."""


# The error classes that cross the channel as themselves, by name; any other
# UserError travels as the nearest of these it inherits from.
ERROR_KINDS: Mapping[str, type[UserError]] = {cls.__name__: cls for cls in (
    UserError, ConfigError, PortInUseError, DaemonNotRunningError, AlreadyRunningError,
    KeystoreError, WrongPassphraseError, PassphraseNeededError, BadAddressError,
    BadInviteError, BadPeerError, PowCancelledError, VanityPrefixError)}


def error_kind(exc: UserError) -> str:
    """The name the client re-raises ``exc`` as: its class's, or its nearest listed base's."""
    for cls in type(exc).__mro__:
        if ERROR_KINDS.get(cls.__name__) is cls:
            return cls.__name__
    return UserError.__name__


def error_from(kind: object, message: str) -> ParanoimError:
    """The error a refused request stands for; ``kind`` is looked up, never evaluated."""
    if kind == UNEXPECTED:
        return DaemonFailedError(message)
    cls = ERROR_KINDS.get(kind, UserError) if isinstance(kind, str) else UserError
    return cls(message)


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
            rt = cls(pid=int(doc["pid"]), token=str(doc["control_token"]),
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


async def take_daemon_lock(data_dir: Path, timeout: float = 10.0) -> DataDirLock:
    """The data directory's lock for a daemon's lifetime. Another command may hold it
    for a moment: wait for that (without blocking the event loop), but not for a
    running daemon, which is an ``AlreadyRunningError`` at once."""
    lock = DataDirLock(data_dir)
    deadline = time.monotonic() + timeout
    while not lock.try_acquire():
        rt = running_daemon(data_dir)
        if rt is not None:
            raise AlreadyRunningError(
                f"ParanoIM already runs for {data_dir} (pid {rt.pid}); stop it with "
                "`paranoim stop` or use another --data-dir")
        if time.monotonic() > deadline:
            raise AlreadyRunningError(f"another ParanoIM process holds {data_dir}; "
                                      "stop it or use another --data-dir")
        await asyncio.sleep(0.05)
    remove_runtime(data_dir)  # any runtime file now is a leftover
    return lock


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


# --- the server side ---------------------------------------------------------------

_OPS: web.AppKey[Operations] = web.AppKey("ops", Operations)
_TOKEN: web.AppKey[str] = web.AppKey("token", str)


def _refusal(message: str, kind: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message, "kind": kind}, status=status)


def _handler(verb: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        args: dict[str, Any] = {**request.query, **request.match_info}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _refusal("the request body is not JSON", "UserError")
            if not isinstance(body, dict):
                return _refusal("the request body must be an object", "UserError")
            args.update(body)
        if not all(isinstance(v, str) for v in args.values()):
            return _refusal("every argument must be a string", "UserError")
        try:
            result = await perform(request.app[_OPS], verb, args)
        except UserError as exc:
            return _refusal(str(exc), error_kind(exc))
        except Exception as exc:
            log.exception("the control command '%s' failed", verb)
            return _refusal(f"unexpected {type(exc).__name__} in the daemon: {exc}", UNEXPECTED,
                            500)
        return web.json_response({"result": result})
    return handler


@web.middleware
async def _token_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    given = request.headers.get(TOKEN_HEADER, "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, request.app[_TOKEN].encode()):
        return web.json_response({"error": "wrong or missing control token"}, status=403)
    response: web.StreamResponse = await handler(request)
    return response


def control_app(ops: Operations, token: str) -> web.Application:
    app = web.Application(middlewares=[_token_middleware], client_max_size=64 * 1024)
    app[_OPS] = ops
    app[_TOKEN] = token
    for name, verb in VERBS.items():
        app.router.add_route(verb.method, PREFIX + verb.path, _handler(name))
    return app


class ControlServer:
    """The control channel as a daemon part: serves ``ops`` while the daemon runs."""

    name = "control channel"

    def __init__(self, ops: Operations, token: str, data_dir: Path) -> None:
        self.ops = ops
        self.token = token
        self.data_dir = data_dir
        self.address = ""  # "unix:/path" or "tcp:127.0.0.1:PORT" once started
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = runner = web.AppRunner(control_app(self.ops, self.token),
                                              access_log=None, shutdown_timeout=2)
        await runner.setup()
        path = control_socket(self.data_dir)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a leftover of a daemon that died; the lock says none runs
            old = os.umask(0o177)  # the socket is created 0600, never wider for a moment
            try:
                await web.UnixSite(runner, str(path)).start()
            finally:
                os.umask(old)
            self.address = f"unix:{path}"
            return
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"tcp:127.0.0.1:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        path = control_socket(self.data_dir)
        if path is not None and self.address:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# --- the client side ---------------------------------------------------------------


class ControlClient:
    """Calls a running daemon's verbs; a refusal raises the daemon's error again."""

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

    async def call(self, verb: str, **args: str) -> Any:
        v = VERBS[verb]
        path = v.path.format_map({k: quote(args[k], safe="")
                                  for k in v.args if "{" + k + "}" in v.path})
        rest = {k: a for k, a in args.items() if "{" + k + "}" not in v.path}
        body, params = (rest, None) if v.method == "POST" else (None, rest)
        headers = {TOKEN_HEADER: f"Bearer {self.runtime.token}"}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(connector=self._connector(), timeout=timeout) as s, \
                    s.request(v.method, self._base + path, json=body, params=params,
                              headers=headers) as resp:
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise DaemonNotRunningError(
                f"the daemon (pid {self.runtime.pid}) does not answer its control channel "
                f"({exc or type(exc).__name__}); stop it and start it again") from None
        if not isinstance(answer, dict) or not ("result" in answer or "error" in answer):
            raise DaemonFailedError(f"the daemon (pid {self.runtime.pid}) answered its control "
                                    "channel with something other than a result")
        if "error" in answer:
            raise error_from(answer.get("kind"), str(answer["error"]))
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
