"""Benchmark of the daemon as a person starts it: ``paranoim run``.

    .venv/bin/python -m tests.bench.bench_daemon [--repeat N] [--idle S]

1. Start-up: wall time from spawning ``paranoim run`` until each listener (XMPP, web
   UI, P2P) accepts a TCP connection, and until the "Ready." line, which is printed
   once all three are up.
2. Memory: resident set size (VmRSS from /proc) of the idle daemon after ``--idle``
   seconds, its worker processes apart, with one identity in the key file.

Baselines from the same run: a bare Python interpreter (``python -c pass``) for start
time, and a minimal aiohttp server on one port for both start time and memory; the
table shows each figure's ratio to them. Each figure is measured ``--repeat`` times:
the median is shown with the range. The load average is printed too: on a shared
machine start times grow with it. The file is named ``bench_*.py`` so pytest does
not collect it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = Path(sys.executable).parent / "paranoim"
AIOHTTP_SERVER = """
import asyncio, sys
from aiohttp import web
async def main():
    runner = web.AppRunner(web.Application())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("Ready.", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def wait_ready(proc: subprocess.Popen[bytes], ports: dict[str, int], t0: float,
               timeout: float = 120.0) -> dict[str, float]:
    """Seconds from t0 until each port accepts and until the Ready. line."""
    seen: dict[str, float] = {}
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buffer = b""
    while time.monotonic() - t0 < timeout:
        for name, port in ports.items():
            if name not in seen and accepts(port):
                seen[name] = time.monotonic() - t0
        with contextlib.suppress(BlockingIOError):
            buffer += os.read(fd, 65536)
        if "ready" not in seen and b"Ready." in buffer:
            seen["ready"] = time.monotonic() - t0
        if len(seen) == len(ports) + 1:
            return seen
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {buffer}")
        time.sleep(0.005)
    raise RuntimeError(f"not ready within {timeout} s: {seen}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_daemon(root: Path, idle: float) -> tuple[dict[str, float], int, int]:
    env = {**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / "config"),
           "XDG_DATA_HOME": str(root / "share"), "PARANOIM_DATA_DIR": str(root / "data")}
    env.pop("PARANOIM_PASSPHRASE", None)
    ports = {"xmpp": free_port(), "web": free_port(), "p2p": free_port()}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(EXE), "run", "--xmpp-port", str(ports["xmpp"]), "--web-port", str(ports["web"]),
         "--p2p-port", str(ports["p2p"]), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        times = wait_ready(proc, ports, t0)
        time.sleep(idle)
        main = rss_kib(proc.pid)
        workers = sum(rss_kib(c) for c in children(proc.pid))
    finally:
        stop(proc)
    return times, main, workers


def run_baseline_server(idle: float) -> tuple[float, int]:
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", AIOHTTP_SERVER, str(port)],
                            stdout=subprocess.PIPE)
    try:
        times = wait_ready(proc, {"web": port}, t0)
        time.sleep(idle)
        return times["ready"], rss_kib(proc.pid)
    finally:
        stop(proc)


def bare_python() -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - t0


def fmt(values: list[float], unit: str, scale: float = 1.0) -> str:
    med = statistics.median(values) * scale
    return f"{med:8.2f} {unit} ({min(values) * scale:.2f}..{max(values) * scale:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds idle before RSS")
    args = ap.parse_args()
    if not EXE.exists():
        sys.exit(f"{EXE} is missing: pip install -e . first")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run([str(EXE), "--data-dir", str(root / "data"), "id", "new", "Bench"],
                       check=True, capture_output=True, env={**os.environ, "HOME": tmp})
        runs = [run_daemon(root, args.idle) for _ in range(args.repeat)]
    base = [run_baseline_server(args.idle) for _ in range(args.repeat)]
    py = [bare_python() for _ in range(args.repeat)]

    base_t = statistics.median(b[0] for b in base)
    base_rss = statistics.median(b[1] for b in base)
    py_t = statistics.median(py)
    print(f"paranoim run, {args.repeat} runs, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'what':<34}{'median (range)':>28}   ratio to baseline")
    for key, label in (("xmpp", "XMPP listener accepts"), ("web", "web UI accepts"),
                       ("p2p", "P2P node accepts"), ("ready", "all three ready (Ready. line)")):
        vals = [r[0][key] for r in runs]
        med = statistics.median(vals)
        print(f"{label:<34}{fmt(vals, 's'):>28}   {med / base_t:5.1f}x aiohttp server, "
              f"{med / py_t:5.1f}x bare python")
    mains = [float(r[1]) for r in runs]
    workers = [float(r[2]) for r in runs]
    totals = [m + w for m, w in zip(mains, workers, strict=True)]
    print(f"{'idle daemon RSS':<34}{fmt(mains, 'MiB', 1 / 1024):>28}   "
          f"{statistics.median(mains) / base_rss:5.1f}x aiohttp server")
    print(f"{'  + worker processes':<34}{fmt(workers, 'MiB', 1 / 1024):>28}")
    print(f"{'  = total':<34}{fmt(totals, 'MiB', 1 / 1024):>28}   "
          f"{statistics.median(totals) / base_rss:5.1f}x aiohttp server")
    print(f"{'baseline: aiohttp server ready':<34}"
          f"{fmt([b[0] for b in base], 's'):>28}")
    print(f"{'baseline: aiohttp server RSS':<34}"
          f"{fmt([float(b[1]) for b in base], 'MiB', 1 / 1024):>28}")
    print(f"{'baseline: python -c pass':<34}{fmt(py, 's'):>28}")


if __name__ == "__main__":
    main()
