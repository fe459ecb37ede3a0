"""The proof-of-work solver against a native-code attacker, one run:

    python -m tests.bench.bench_pow [--seconds S] [--repeat N]

Rows, each on one core and in CPU time (so they stay meaningful on a shared
machine), as candidates (output blocks tested) per second:

- Python, one nonce per blake3 call (``pow.solve_per_nonce``): what a naive
  proof costs an honest Python node;
- Python bulk solver, the first version of the scan (a function call per block
  whose first byte is zero) and the current one (``pow.solve_range``), at three
  sizes of blake3 call (``CHUNK_BLOCKS`` is the daemon's);
- native code (``tests/bench/native/pow_attacker.c``, built here with gcc
  ``-O3``): the compression function of the output blocks written out, one block
  at a time (scalar), 8 at a time (AVX2) and 16 at a time (AVX-512, where the CPU
  has it), keeping only the 8 bytes the proof reads; and the official BLAKE3 C
  library's extendable output asked for 256 KiB at a time, as the Python solver
  asks the Rust one (when Debian's ``librust-blake3-dev``, which carries the
  library's C sources, is installed).

Every native mode is first checked against ``pow.solve_range``: the same first
nonce for the vector digest of docs/pow.md at D = 4 … 20. The ratio column is the
attacker's advantage over the daemon's solver measured in the same run.

The file is named ``bench_*.py`` so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import blake3

from bridge.core import pow

NATIVE_SOURCE = Path(__file__).with_name("native") / "pow_attacker.c"
VECTOR_DIGEST = bytes(range(32))
VECTOR_FIRST = {4: 5, 8: 54, 12: 1615, 16: 26887, 20: 427189}  # docs/pow.md §1
IMPOSSIBLE = 64  # no block in any range scanned here has 64 zero bits: nothing stops early


# --- the Python rows ------------------------------------------------------------------


def solve_range_v1(digest: bytes, bits: int, start: int, count: int,
                   chunk: int = pow.CHUNK_BLOCKS) -> int | None:
    """The bulk solver as it was first written: a function call per zero first byte."""
    end = start + count
    hasher = blake3.blake3(pow.pow_seed(digest))
    pos = start
    while pos < end:
        n = min(chunk, end - pos)
        buf: bytes = hasher.digest(length=pow.BLOCK * n, seek=pow.BLOCK * pos)
        heads = buf[:: pow.BLOCK]
        j = heads.find(0)
        while j >= 0:
            if pow.leading_zero_bits(buf[pow.BLOCK * j : pow.BLOCK * j + 8]) >= bits:
                return pos + j
            j = heads.find(0, j + 1)
        pos += n
    return None


def python_rate(solve: Callable[[int, int], object], seconds: float, step: int) -> float:
    """Candidates per CPU second of ``solve(start, count)``, ranges of ``step``."""
    tried = 0
    c0 = time.process_time()
    while time.process_time() - c0 < seconds:
        solve(tried, step)
        tried += step
    return tried / (time.process_time() - c0)


def with_chunk(chunk: int) -> Callable[[int, int], object]:
    def solve(start: int, count: int) -> object:
        saved = pow.CHUNK_BLOCKS
        pow.CHUNK_BLOCKS = chunk  # type: ignore[misc]
        try:
            return pow.solve_range(os_digest, IMPOSSIBLE, start, count)
        finally:
            pow.CHUNK_BLOCKS = saved  # type: ignore[misc]
    return solve


os_digest = os.urandom(32)


# --- the native attacker -----------------------------------------------------------------


def blake3_c_sources() -> Path | None:
    """The official BLAKE3 C library, as Debian's librust-blake3-dev ships it."""
    registry = Path("/usr/share/cargo/registry")
    for crate in sorted(registry.glob("blake3-*"), reverse=True):
        if (crate / "c" / "blake3.h").exists():
            return crate / "c"
    return None


def build_attacker(workdir: Path) -> tuple[Path | None, bool, str]:
    """(binary, whether it has the official library's mode, a note)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, False, "no gcc: the native rows are missing"
    out = workdir / "pow_attacker"
    lib = blake3_c_sources()
    argv = [gcc, "-O3", "-o", str(out), str(NATIVE_SOURCE)]
    note = ""
    if lib is not None and platform.machine() == "x86_64":
        argv[1:1] = ["-DWITH_LIB", f"-I{lib}"]
        argv += [str(lib / f) for f in ("blake3.c", "blake3_dispatch.c", "blake3_portable.c",
                                        "blake3_sse2_x86-64_unix.S",
                                        "blake3_sse41_x86-64_unix.S",
                                        "blake3_avx2_x86-64_unix.S",
                                        "blake3_avx512_x86-64_unix.S")]
    else:
        note = ("the official BLAKE3 C library was not found (Debian: librust-blake3-dev): "
                "its row is missing")
    subprocess.run(argv, check=True)
    return out, lib is not None, note


def native(binary: Path, mode: str, digest: bytes, bits: int, start: int,
           count: int) -> tuple[int, int, float]:
    """(first nonce or -1, candidates tried, CPU seconds) of one native run."""
    out = subprocess.run([str(binary), mode, digest.hex(), str(bits), str(start), str(count)],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1]), float(out[2])


def native_rate(binary: Path, mode: str, seconds: float) -> float:
    count = 1 << 20
    while True:  # grow the range until one run lasts the time asked for
        _, tried, cpu = native(binary, mode, os_digest, IMPOSSIBLE, 0, count)
        if cpu >= seconds or count >= 1 << 40:
            return tried / cpu
        count = int(count * min(16.0, max(2.0, 1.2 * seconds / max(cpu, 1e-4))))


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# --- the table ----------------------------------------------------------------------


@dataclass
class Row:
    name: str
    rates: list[float]

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def spread(self) -> str:
        return f"{min(self.rates) / 1e6:.1f}..{self.best / 1e6:.1f}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU time per figure")
    parser.add_argument("--repeat", type=int, default=3, help="measure each figure N times")
    args = parser.parse_args(argv)
    flags = cpu_flags()
    modes = ["scalar"] + [m for m, f in (("avx2", "avx2"), ("avx512", "avx512f"))
                          if f in flags and platform.machine() == "x86_64"]
    rows: list[Row] = []
    notes: list[str] = []

    def measure(name: str, fn: Callable[[], float]) -> Row:
        row = Row(name, [fn() for _ in range(args.repeat)])
        rows.append(row)
        return row

    with tempfile.TemporaryDirectory(prefix="paranoim-bench-pow-") as tmp:
        binary, has_lib, note = build_attacker(Path(tmp))
        if note:
            notes.append(note)
        if binary is not None:
            if has_lib:
                modes.append("lib")
            for mode in modes:  # the attacker finds what the daemon finds
                for bits, first in VECTOR_FIRST.items():
                    found = native(binary, mode, VECTOR_DIGEST, bits, 0, 1 << 24)[0]
                    ours = pow.solve_range(VECTOR_DIGEST, bits, 0, 1 << 24)
                    if not found == ours == first:
                        raise SystemExit(f"native {mode} found {found} for D={bits}, the "
                                         f"solver {ours}, the vector {first}")
            notes.append(f"native modes {', '.join(modes)}: same first nonces as "
                         "pow.solve_range and the vectors for D = 4, 8, 12, 16, 20")

        per_nonce = measure("Python: one blake3 call per nonce (solve_per_nonce)",
                            lambda: python_rate(lambda s, n: pow.solve_per_nonce(
                                os_digest, IMPOSSIBLE, s, n), args.seconds / 2, 1 << 14))
        v1 = measure(f"Python: bulk, first scan (a call per zero byte), {pow.CHUNK_BLOCKS} blocks"
                     " per call", lambda: python_rate(lambda s, n: solve_range_v1(
                         os_digest, IMPOSSIBLE, s, n), args.seconds, 1 << 22))
        for chunk in (1024, pow.CHUNK_BLOCKS, 16384):
            mark = " (the daemon's)" if chunk == pow.CHUNK_BLOCKS else ""
            row = measure(f"Python: bulk solve_range, {chunk} blocks per call{mark}",
                          lambda c=chunk: python_rate(with_chunk(c), args.seconds, 1 << 22))
            if chunk == pow.CHUNK_BLOCKS:
                ours = row
        if binary is not None:
            names = {"scalar": "native C: one block at a time (scalar)",
                     "avx2": "native C: 8 blocks at a time (AVX2)",
                     "avx512": "native C: 16 blocks at a time (AVX-512)",
                     "lib": "native C: official BLAKE3 C library XOF, 256 KiB per call"}
            for mode in modes:
                measure(names[mode], lambda m=mode: native_rate(binary, m, args.seconds))

    print(f"\n## Proof-of-work solver vs native code, one core ({cpu_name()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"AVX2 {'yes' if 'avx2' in flags else 'no'}, "
          f"AVX-512 {'yes' if 'avx512f' in flags else 'no'}; blake3 {blake3.__version__}; "
          f"best of {args.repeat}, CPU time)\n")
    print("| solver | M candidates/s | spread | ÷ daemon's solver | ÷ per-nonce loop |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.name} | {row.best / 1e6:.1f} | {row.spread} | "
              f"{row.best / ours.best:.2f} | {row.best / per_nonce.best:.0f} |")
    natives = [r for r in rows if r.name.startswith("native")]
    if natives:
        top = max(natives, key=lambda r: r.best)
        print(f"\nattacker's advantage per core: {top.best / ours.best:.2f}× "
              f"({top.name.removeprefix('native C: ')}); the first scan ran at "
              f"{v1.best / ours.best:.2f}× the current one")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main(sys.argv[1:])
