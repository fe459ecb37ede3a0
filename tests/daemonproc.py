"""Run the real ``paranoim`` executable as a subprocess, as a person would.

``Paranoim`` gives each test its own HOME, XDG directories and data directory, so
nothing touches the user's files. ``run()`` runs one command to its end;
``start()`` starts a long-running one (``run``, ``demo``) and waits for its
"Ready." line with a deadline, collecting stdout and stderr in threads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.util import skip_or_fail

EXE = Path(sys.executable).parent / "paranoim"
READY = "Ready. Press Ctrl-C to stop."


def executable() -> str:
    if not EXE.exists():
        skip_or_fail(f"{EXE} is missing: run `pip install -e .` in the venv")
    return str(EXE)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def _pump(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def start_pumps(self) -> None:
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The first stdout line containing ``text``; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the pumps drain
                raise AssertionError(
                    f"paranoim exited with {self.proc.returncode} before {text!r}:\n"
                    + "\n".join(self.stdout + self.stderr))
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} within {timeout:g}s:\n"
                             + "\n".join(self.stdout + self.stderr))

    def line(self, prefix: str) -> str:
        for line in self.stdout:
            if line.strip().startswith(prefix):
                return line.strip()[len(prefix):].strip()
        raise AssertionError(f"no line starting with {prefix!r} in {self.stdout}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, *,
             group: bool = False) -> int:
        """Send ``sig`` (to the whole process group, as Ctrl-C does, if ``group``)."""
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            output = "\n".join(self.stdout + self.stderr)
            raise AssertionError(f"paranoim did not stop within {timeout:g}s:\n{output}") from None


class Paranoim:
    """A sandbox (HOME, XDG dirs, data dir) and the commands run inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.env = {
            **os.environ,
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "home" / ".config"),
            "XDG_DATA_HOME": str(root / "home" / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(root / "run"),
            "PARANOIM_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("PARANOIM_PASSPHRASE", "PARANOIM_NEW_PASSPHRASE", "PARANOIM_CONFIG",
                    "DISPLAY", "WAYLAND_DISPLAY"):
            self.env.pop(key, None)
        self.running: list[Running] = []

    @property
    def config_file(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "paranoim" / "config.toml"

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    def runtime(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.runtime_file.read_text())
        return doc

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([executable(), *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, input=input,
                              check=False)

    def start(self, *args: str, env: dict[str, str] | None = None, ready: str = READY,
              timeout: float = 60.0, new_session: bool = False) -> Running:
        """``new_session``: its own process group, as a terminal's foreground job has."""
        proc = subprocess.Popen([executable(), *args], env={**self.env, **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                start_new_session=new_session)
        running = Running(proc)
        running.start_pumps()
        self.running.append(running)
        running.wait_for(ready, timeout)
        return running

    def start_daemon(self, *extra: str, free_port: object, **kw: object) -> Running:
        """``paranoim run`` on free ports, low difficulty, P2P on loopback only."""
        fp = free_port  # a callable giving free ports
        args = ["run", "--xmpp-port", str(fp()), "--web-port", str(fp()),  # type: ignore[operator]
                "--p2p-port", str(fp()), "--difficulty", "8", *extra]  # type: ignore[operator]
        if not self.config_file.exists():
            self.write_config('[p2p]\nlisten = "127.0.0.1"\n')
        return self.start(*args, **kw)  # type: ignore[arg-type]

    def new_identity(self, nick: str) -> dict[str, str]:
        """``paranoim id new``: its Address, JID and Password (fails on an error)."""
        res = self.run("id", "new", nick)
        assert res.returncode == 0, res.stderr
        return dict(re.findall(r"^\s+(Address|JID|Password):\s+(\S+)", res.stdout, re.M))

    def add_contact(self, address: str, name: str) -> None:
        res = self.run("contact", "add", address, "--name", name)
        assert res.returncode == 0, res.stderr

    def write_config(self, text: str) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)

    def cleanup(self) -> None:
        for r in self.running:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()


def sandboxes(root: Path) -> Iterator[Callable[[str], Paranoim]]:
    """Make named sandboxes below ``root`` whose P2P node listens on loopback only;
    all are cleaned up when the generator ends (use it as a fixture's body)."""
    made: list[Paranoim] = []

    def make(name: str) -> Paranoim:
        p = Paranoim(root / name)
        p.write_config('[p2p]\nlisten = "127.0.0.1"\n')
        made.append(p)
        return p

    yield make
    for p in made:
        p.cleanup()
