"""A real ``tor`` with its network disabled, for onion-service and control-port tests.

``DisableNetwork 1`` keeps it off the Internet; the control port is chosen by tor
(``ControlPort auto``) and read back from ``ControlPortWriteToFile``; authentication is by
cookie. ADD_ONION answers offline, so onion-service creation can be tested without a
network. ``TorControl`` is the few lines of the control protocol a test needs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from ._common import (
    DriverError,
    free_tcp_port,
    poll_until,
    port_accepts,
    stop_process,
    tail,
)
from ._common import find_program as _find


class TorControl:
    """A blocking control-port connection: ``authenticate()`` then ``command()``."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def command(self, line: str) -> list[str]:
        """Send one command; return its reply lines. A non-2xx status raises DriverError."""
        self.sock.sendall(line.encode() + b"\r\n")
        lines: list[str] = []
        while True:
            raw = self.reader.readline()
            if not raw:
                raise DriverError(f"tor closed the control connection after {line.split()[0]}")
            text = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(text)
            # "250-..." continues, "250+..." opens a data block ending with ".", "250 ..." ends.
            if len(text) >= 4 and text[3] == "+":
                while (
                    data := self.reader.readline().decode(errors="replace").rstrip("\r\n")
                ) != ".":
                    lines.append(data)
            elif len(text) >= 4 and text[3] == " ":
                break
        if not lines[-1].startswith("2"):
            raise DriverError(f"tor refused {line.split()[0]}: {lines}")
        return lines

    def authenticate(self, cookie_path: Path) -> None:
        self.command(f"AUTHENTICATE {cookie_path.read_bytes().hex()}")

    def add_onion(self, target_port: int, virtual_port: int = 80) -> tuple[str, str]:
        """A new ephemeral v3 onion service; returns (service id, private key blob)."""
        reply = self.command(
            f"ADD_ONION NEW:ED25519-V3 Port={virtual_port},127.0.0.1:{target_port}"
        )
        fields = dict(ln[4:].split("=", 1) for ln in reply if "=" in ln)
        return fields["ServiceID"], fields.get("PrivateKey", "")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> TorControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Tor:
    """One tor process, offline by default.

    ``socks=True`` also asks for a SOCKS port on loopback (``socks_port``). Tor opens no
    SOCKS listener while ``DisableNetwork`` is set, so ``socks=True`` also turns the network
    on unless ``disable_network=True`` is given explicitly; with the network on, tor tries
    to bootstrap (harmlessly failing on a closed network) and accepts SOCKS connections.
    """

    def __init__(
        self,
        *,
        socks: bool = False,
        disable_network: bool | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.binary = _find("tor", "tor")
        self.dir = Path(tempfile.mkdtemp(prefix="paranoim-tor-"))
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(mode=0o700)
        self.port_file = self.dir / "control.port"
        self.log = self.dir / "tor.log"
        self.socks_port: int | None = free_tcp_port() if socks else None
        self.control_port: int | None = None
        self.disable_network = (not socks) if disable_network is None else disable_network
        self.extra = extra or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def cookie_path(self) -> Path:
        return self.data_dir / "control_auth_cookie"

    def _torrc(self) -> str:
        options = {
            "DataDirectory": str(self.data_dir),
            "DisableNetwork": "1" if self.disable_network else "0",
            "SocksPort": f"127.0.0.1:{self.socks_port}" if self.socks_port else "0",
            "ControlPort": "auto",
            "ControlPortWriteToFile": str(self.port_file),
            "CookieAuthentication": "1",
            "CookieAuthFile": str(self.cookie_path),
            "Log": f"notice file {self.log}",
            "AvoidDiskWrites": "1",
            **self.extra,
        }
        return "".join(f"{k} {v}\n" for k, v in options.items())

    def start(self, timeout: float = 30.0) -> Tor:
        torrc = self.dir / "torrc"
        torrc.write_text(self._torrc())
        self.proc = subprocess.Popen(
            [self.binary, "-f", str(torrc), "--defaults-torrc", os.devnull],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )

        def ready() -> int | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise DriverError(f"tor exited with {self.proc.returncode}\n{tail(self.log)}")
            if not (self.port_file.exists() and self.cookie_path.exists()):
                return None
            text = self.port_file.read_text().strip()
            if not text.startswith("PORT="):
                return None
            port = int(text.rsplit(":", 1)[1])
            if (
                self.socks_port is not None
                and not self.disable_network
                and not port_accepts(self.socks_port)
            ):
                return None
            return port if port_accepts(port) else None

        try:
            self.control_port = poll_until(
                ready, timeout, "tor's control port", on_timeout=lambda: tail(self.log)
            )
        except BaseException:
            self.cleanup()
            raise
        return self

    def control(self) -> TorControl:
        """A new authenticated control connection."""
        if self.control_port is None:
            raise DriverError("tor not started")
        ctl = TorControl(self.control_port)
        ctl.authenticate(self.cookie_path)
        return ctl

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Tor:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
