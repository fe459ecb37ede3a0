"""microsocks, a small real SOCKS5 server, on a free loopback port."""

from __future__ import annotations

import subprocess
from types import TracebackType

from ._common import (
    DriverError,
    find_program,
    free_tcp_port,
    poll_until,
    port_accepts,
    stop_process,
)


class Microsocks:
    """``microsocks -i 127.0.0.1 -p PORT [-u USER -P PASS]``; ``url`` is for aiohttp-socks."""

    def __init__(self, *, user: str | None = None, password: str | None = None) -> None:
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self.binary = find_program("microsocks", "microsocks")
        self.host = "127.0.0.1"
        self.port = free_tcp_port()
        self.user = user
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"socks5://{auth}{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Microsocks:
        argv = [self.binary, "-i", self.host, "-p", str(self.port)]
        if self.user is not None and self.password is not None:
            argv += ["-u", self.user, "-P", self.password]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise DriverError(f"microsocks exited with {self.proc.returncode}: {err}")
            return port_accepts(self.port)

        try:
            poll_until(ready, timeout, f"microsocks on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def __enter__(self) -> Microsocks:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
