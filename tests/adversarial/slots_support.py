"""What the slot and address attacks share: the attacker process, an honest peer
that measures how long it takes to be admitted, and the victim's cost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bridge.core import gossip_wire as w
from tests.daemonproc import Running

ROOT = Path(__file__).resolve().parents[2]


def start_attacker(*args: str) -> Running:
    proc = subprocess.Popen([sys.executable, "-m", "tests.adversarial.slots_attacker", *args],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = Running(proc)
    run.start_pumps()
    return run


def stop_attacker(run: Running) -> dict[str, float]:
    """End the attack; the attacker's own figures."""
    assert run.proc.stdin is not None
    run.proc.stdin.close()
    line = run.wait_for("stats ", 60)
    run.proc.wait(10)
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


async def honest_connect(port: int, src: str = "127.9.9.9",
                         timeout: float = 10.0) -> tuple[float, tuple[str, ...]]:
    """Connect to the node as an honest peer from ``src``: seconds until it is admitted
    (its PEERS frame, sent once our HELLO is accepted) and the addresses it offered."""
    start = time.monotonic()
    refusals: list[str] = []
    conn = aiohttp.TCPConnector(local_addr=(src, 0), force_close=True)
    try:
        async with asyncio.timeout(timeout), aiohttp.ClientSession(connector=conn) as s:
            while True:
                try:
                    ws = await s.ws_connect(f"http://127.0.0.1:{port}/p2p",
                                            max_msg_size=w.MAX_FRAME_SIZE)
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status != 403:  # 403: no slot now; anything else is a failure
                        raise
                    refusals.append(f"HTTP {exc.status}")
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    refusals.append(type(exc).__name__)  # cut at accept (admission)
                else:
                    async with ws:
                        addrs = await _hello(ws)
                    if addrs is not None:
                        return time.monotonic() - start, addrs
                    refusals.append("BYE")
                await asyncio.sleep(0.05)  # what must not last; a retry's pause, as a dialler's
    except TimeoutError:
        raise AssertionError(f"not admitted within {timeout} s; refused {len(refusals)} "
                             f"times, last: {refusals[-1] if refusals else 'never'}") from None


async def _hello(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, ...] | None:
    """Our HELLO; the addresses of the node's PEERS frame once it admits us, or None
    if it says BYE."""
    await ws.send_bytes(w.encode(w.Hello(w.PROTOCOL_VERSION, 8, int(time.time()),
                                         os.urandom(16), False, "")))
    async for msg in ws:
        m = w.parse(msg.data)
        if isinstance(m, w.Peers):
            return m.addrs
        if isinstance(m, w.Bye):
            return None
    return None


@dataclass
class Usage:
    cpu: float  # seconds, user + system
    peak_rss_kib: int


def usage(pid: int) -> Usage:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return Usage(cpu, hwm)
