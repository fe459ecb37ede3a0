"""Shared plumbing for the drivers: free ports, deadlines, the unprivileged test user.

Every wait here polls a condition against a deadline; nothing sleeps a fixed time and hopes.
Programs that refuse to run as root (poezio, Prosody) run as ``paranoim-test`` when the tests
run as root, and as the current user otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

TEST_USER = "paranoim-test"

T = TypeVar("T")


class DriverError(RuntimeError):
    """A driven program did not behave; the message says which and shows its output."""


class DriverTimeout(DriverError, TimeoutError):
    """A condition was not met before its deadline."""


class ProgramMissing(DriverError, FileNotFoundError):
    """A program the test needs is not installed."""

    def __init__(self, program: str, package: str) -> None:
        super().__init__(
            f"{program} is not installed (Debian package {package!r}); "
            "scripts/test.sh installs it when run as root"
        )
        self.program = program
        self.package = package


def find_program(program: str, package: str | None = None) -> str:
    """The absolute path of ``program``, or ProgramMissing naming its Debian package."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        raise ProgramMissing(program, package or program)
    return path


# --- ports -----------------------------------------------------------------------------

_handed_out: set[int] = set()
# Ports are handed out below the kernel's ephemeral range (32768-60999 here), where no
# outgoing connection ever takes one: a port from bind(0) is an ephemeral one, and a
# client socket of another test run could hold it by the time a daemon binds it. Each
# process starts at its own random place in the range, so runs side by side (the suite
# on several Pythons) rarely meet.
_PORT_RANGE = range(20000, 32000)
_cursor = random.randrange(len(_PORT_RANGE))


def _bindable(port: int, host: str) -> bool:
    for where in {host, "0.0.0.0"}:  # daemons bind their P2P port on every address
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((where, port))
            except OSError:
                return False
    return True


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, never the same one twice in this process."""
    global _cursor
    for _ in range(len(_PORT_RANGE)):
        port = _PORT_RANGE[_cursor]
        _cursor = (_cursor + 1) % len(_PORT_RANGE)
        if port not in _handed_out and _bindable(port, host):
            _handed_out.add(port)
            return port
    raise DriverError("no free TCP port found")


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connection to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- deadlines -------------------------------------------------------------------------


def poll_until(
    predicate: Callable[[], T | bool | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, which is returned.

    Raises DriverTimeout after ``timeout`` seconds; ``on_timeout`` may add diagnostics
    (a pane, a log tail) to the message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise DriverTimeout(f"timed out after {timeout:g}s waiting for {what}\n{extra}")
        time.sleep(interval)


async def apoll_until(
    predicate: Callable[[], T | bool | None] | Callable[[], Awaitable[T | bool | None]],
    timeout: float,
    what: str,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """The asyncio form of poll_until: the event loop keeps running between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise DriverTimeout(f"timed out after {timeout:g}s waiting for {what}\n{extra}")
        await asyncio.sleep(interval)


def tail(path: Path, limit: int = 4000) -> str:
    """The last ``limit`` characters of a text file, or a note that it is absent."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    return f"--- {path} (last {limit} chars) ---\n{text[-limit:]}"


# --- the unprivileged user -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunAs:
    """Who a driven program runs as: ``argv_prefix`` + command does it."""

    uid: int
    gid: int
    name: str
    argv_prefix: tuple[str, ...]

    def wrap(self, argv: list[str]) -> list[str]:
        return [*self.argv_prefix, *argv]

    def chown_tree(self, root: Path) -> None:
        """Give ``root`` and all below it to this user (a no-op when it is us)."""
        if self.uid == os.geteuid():
            return
        for dirpath, dirnames, filenames in os.walk(root):
            os.chown(dirpath, self.uid, self.gid)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)

    def make_dir(self, prefix: str) -> Path:
        """A new private (0700) directory under the system temp dir owned by this user.

        pytest's tmp_path lives under a 0700 root-owned directory the test user cannot
        enter, so drivers that run programs as that user make their own.
        """
        path = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(path, 0o700)
        self.chown_tree(path)
        return path


def ensure_test_user() -> str:
    """Create the ``paranoim-test`` user if it is missing (root only); return its name."""
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        useradd = find_program("useradd", "passwd")
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--create-home",
                "--home-dir",
                f"/var/lib/{TEST_USER}",
                "--shell",
                "/bin/sh",
                TEST_USER,
            ],
            check=True,
            capture_output=True,
        )
    return TEST_USER


def run_as() -> RunAs:
    """Who programs that refuse root run as: ``paranoim-test`` under root, else ourselves."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return RunAs(me.pw_uid, me.pw_gid, me.pw_name, ())
    entry = pwd.getpwnam(ensure_test_user())
    setpriv = find_program("setpriv", "util-linux")
    prefix = (setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--")
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, prefix)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A small, predictable environment for a driven program living in ``home``."""
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(home / ".run"),
    }
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    return proc.returncode
