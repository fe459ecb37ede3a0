"""Benchmark of the protocol core: proof of work, sealing, opening, vanity.

    python -m tests.bench.bench_core [--repeat N] [--seconds S]
    python tests/bench/bench_core.py

Prints one table. Single-core figures are measured in CPU time of this process
(``time.process_time``), so they stay meaningful on a shared machine; the wall
clock rate is shown beside them. The all-cores figures can only be measured in
wall time, so they drop when other programs hold the cores: the load average is
printed with the table. Every ratio is against a baseline measured in the same
run. With ``--repeat N`` each figure is measured N times; the table shows the
best run and the spread (worst..best).

The file is named ``bench_*.py`` so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import blake3

from bridge.core import crypto, kem, pow, ratchet, seal, tags, vanity
from bridge.core import handshake as hs
from bridge.core.checks import DEFAULT_BASE_BITS, check_envelope, stamp_inline
from bridge.core.envelope import Kind, parse_envelope
from bridge.core.errors import PowCancelledError
from bridge.core.identity import Identity
from bridge.core.records import DirectMessage, parse_record
from bridge.net.workers import Progress, WorkerPool

NOW = 1_800_000_000
IMPOSSIBLE = 64  # no block has 64 zero bits in any range we scan: the solver never stops early


@dataclass
class Timed:
    cpu: float
    wall: float


def timed(fn: Callable[[], object]) -> Timed:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return Timed(time.process_time() - c0, time.perf_counter() - w0)


# --- single-core measurements ---------------------------------------------------


def pow_one_core(seconds: float) -> tuple[float, float]:
    """(candidates/s in CPU time, in wall time) for pow.solve_range."""
    digest = os.urandom(32)
    n = 1 << 22
    t = timed(lambda: pow.solve_range(digest, IMPOSSIBLE, 0, n))  # calibrate
    n = max(n, int(n * seconds / max(t.cpu, 1e-3)))
    t = timed(lambda: pow.solve_range(digest, IMPOSSIBLE, 1 << 40, n))
    return n / t.cpu, n / t.wall


def pow_per_nonce(seconds: float) -> float:
    digest = os.urandom(32)
    n = 100_000
    t = timed(lambda: pow.solve_per_nonce(digest, IMPOSSIBLE, 0, n))
    n = max(n, int(n * seconds / max(t.cpu, 1e-3)))
    t = timed(lambda: pow.solve_per_nonce(digest, IMPOSSIBLE, 0, n))
    return n / t.cpu


def verify_us() -> float:
    digest = os.urandom(32)
    n = 200_000
    work_bits = pow.work_bits

    def run() -> None:
        for i in range(n):
            work_bits(digest, i)

    return timed(run).cpu / n * 1e6


def seal_open_us(payload_size: int = 1024) -> tuple[float, float]:
    alice, bob = Identity.from_seed(b"a" * 32), Identity.from_seed(b"b" * 32)
    payload = os.urandom(payload_size)
    tag = tags.address_tag(bob.public, tags.epoch_of(NOW))
    bob_kex = bob.x25519_public
    n = 1000
    ephemerals = [os.urandom(32) for _ in range(n)]
    raws: list[bytes] = []

    def run_seal() -> None:
        for e in ephemerals:
            raws.append(seal.seal(sender_secret_key=alice.secret_key, sender=alice.public,
                                  recipient=bob.public, kex_public=bob_kex, kind=Kind.DIRECT,
                                  tag=tag, expiry=NOW + 3600, payload=payload,
                                  ephemeral_secret=e))

    t_seal = timed(run_seal).cpu / n
    envs = [parse_envelope(r) for r in raws]
    keys = [seal.kex_key(bob.x25519_secret)]

    def run_open() -> None:
        for env in envs:
            seal.open_envelope(env, bob.public, keys)

    t_open = timed(run_open).cpu / n
    return t_seal * 1e6, t_open * 1e6


@dataclass
class SessionFigures:
    initiate: float  # µs: verify the hybrid prekey, encapsulate, handshake, first ratchet step
    respond: float  # µs: parse the block, decapsulate, handshake, start the ratchet
    encrypt: float  # µs per 1 KiB message in a chain
    decrypt: float  # µs per 1 KiB message in a chain, in order
    decrypt_step: float  # µs per 1 KiB message that takes a DH step
    open_signed: float  # µs: decrypt + the inner record's Ed25519 check (version 2's open)


def session_figures(payload_size: int = 1024) -> SessionFigures:
    """The session layer, 1 KiB messages, in CPU time (docs/sessions.md §13)."""
    alice, bob = Identity.from_seed(b"a" * 32), Identity.from_seed(b"b" * 32)
    now = NOW
    spk, kem_seed = os.urandom(32), os.urandom(64)
    prekey = hs.make_hybrid_prekey(bob, spk, kem_seed, now + 86400)
    n = 200
    results: list[hs.Handshake] = []

    def run_initiate() -> None:
        for _ in range(n):
            h = hs.initiate(identity=alice, responder=bob.public, prekey=prekey, one_time=None,
                            now=now, ephemeral_secret=os.urandom(32),
                            encapsulated=kem.encapsulate(prekey.kem))
            ratchet.start_initiator(created=h.created, secret=h.secret, ad=h.ad,
                                    session_id=h.session_id, init=h.init,
                                    their_prekey=h.prekey_x25519, ratchet_secret=os.urandom(32))
            results.append(h)

    t_init = timed(run_initiate).cpu / n
    blocks = [r.init for r in results]

    def run_respond() -> None:
        for block in blocks:
            h = hs.respond(identity=bob, block=hs.InitBlock.parse(block), prekey=prekey,
                           prekey_secret=spk, kem_seed=kem_seed)
            ratchet.start_responder(created=h.created, secret=h.secret, ad=h.ad,
                                    session_id=h.session_id, prekey_secret=spk,
                                    prekey_public=prekey.x25519)

    t_resp = timed(run_respond).cpu / n
    h = results[0]
    a = ratchet.start_initiator(created=h.created, secret=h.secret, ad=h.ad,
                                session_id=h.session_id, init=h.init,
                                their_prekey=h.prekey_x25519, ratchet_secret=os.urandom(32))
    b = ratchet.start_responder(created=h.created, secret=h.secret, ad=h.ad,
                                session_id=h.session_id, prekey_secret=spk,
                                prekey_public=prekey.x25519)
    ad = bytes(58)
    payload = os.urandom(payload_size)
    m = 2000
    secrets = [os.urandom(32) for _ in range(m)]
    sent: list[ratchet.Encrypted] = []
    state = a

    def run_encrypt() -> None:
        nonlocal state
        for sec in secrets:
            out = ratchet.encrypt(state, payload, ad, sec)
            state = out.state
            sent.append(out)

    t_enc = timed(run_encrypt).cpu / m
    inner = payload[:-64]
    sig = crypto.sign(alice.secret_key, crypto.SIG_ENVELOPE + bob.public + ad + inner)
    rstate = b

    def run_decrypt() -> None:
        nonlocal rstate
        for out in sent:
            rstate = ratchet.decrypt(rstate, out.header, out.body, ad, now).state

    t_dec = timed(run_decrypt).cpu / m

    def run_open_signed() -> None:
        s2 = b
        for out in sent:
            s2 = ratchet.decrypt(s2, out.header, out.body, ad, now).state
            crypto.verify(alice.public, crypto.SIG_ENVELOPE + bob.public + ad + inner, sig)

    t_open = timed(run_open_signed).cpu / m
    # a conversation in turns: every message takes a DH step at both ends
    turns = 300
    pair = [state, rstate]
    t_step = 0.0
    for i in range(turns):
        out = ratchet.encrypt(pair[i % 2], payload, ad, os.urandom(32))
        pair[i % 2] = out.state
        c0 = time.process_time()
        pair[1 - i % 2] = ratchet.decrypt(pair[1 - i % 2], out.header, out.body, ad, now).state
        t_step += time.process_time() - c0
    t_step /= turns
    return SessionFigures(t_init * 1e6, t_resp * 1e6, t_enc * 1e6, t_dec * 1e6, t_step * 1e6,
                          t_open * 1e6)


def make_envelopes(count: int, senders: int) -> tuple[Identity, list[bytes]]:
    """``count`` direct messages from ``senders`` identities, stamped at the default
    difficulty (DEFAULT_BASE_BITS, 256-byte bucket, one hour: the common case)."""
    bob = Identity.from_seed(b"b" * 32)
    tag = tags.address_tag(bob.public, tags.epoch_of(NOW))
    people = [Identity.from_seed(os.urandom(32)) for _ in range(senders)]
    out = []
    for i in range(count):
        s = people[i % senders]
        raw = seal.seal(sender_secret_key=s.secret_key, sender=s.public, recipient=bob.public,
                        kex_public=bob.x25519_public, kind=Kind.DIRECT, tag=tag,
                        expiry=NOW + 3600,
                        payload=DirectMessage(NOW * 1000, f"message {i}", True, f"m{i}").encode(),
                        ephemeral_secret=os.urandom(32))
        out.append(stamp_inline(raw, now=NOW, base_bits=DEFAULT_BASE_BITS))
    return bob, out


def opened_per_second(bob: Identity, raws: list[bytes], *, cold: bool) -> float:
    """check_envelope + open_envelope + record parse, per CPU second."""
    keys = [seal.kex_key(bob.x25519_secret)]
    rounds = 3

    def run() -> None:
        for _ in range(rounds):
            if cold:
                seal._check_sender.cache_clear()
            for raw in raws:
                env = check_envelope(raw, now=NOW)
                opened = seal.open_envelope(env, bob.public, keys)
                parse_record(env.kind, opened.payload)

    return rounds * len(raws) / timed(run).cpu


def vanity_one_core(seconds: float) -> float:
    base = os.urandom(24)
    n = 5000
    t = timed(lambda: vanity.search_range("zzzzzzzzzzzz", base, 0, n))
    n = max(n, int(n * seconds / max(t.cpu, 1e-3)))
    return n / timed(lambda: vanity.search_range("zzzzzzzzzzzz", base, 0, n)).cpu


# --- all cores ------------------------------------------------------------------


async def _pool_rate(pool: WorkerPool, job: Callable[[asyncio.Event, Progress],
                                                         asyncio.Future[object]],
                     seconds: float) -> float:
    """Attempts per wall second: the work of every completed range, over the time
    from the start of the job to the last completion. Work still in flight at
    that moment is left out, so the figure errs low (by at most one range per
    worker), never high."""
    cancelled = asyncio.Event()
    progress = Progress()
    started = time.perf_counter()
    task = asyncio.ensure_future(job(cancelled, progress))
    last, last_at = 0, started
    deadline = started + seconds
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.001)
        if progress.attempts != last:
            last, last_at = progress.attempts, time.perf_counter()
    cancelled.set()
    with contextlib.suppress(PowCancelledError):
        await task
    return last / (last_at - started) if last else 0.0


async def pool_rates(workers: int, seconds: float, *, vanity_too: bool = True
                     ) -> tuple[float, float]:
    pool = WorkerPool(workers)
    try:
        await pool.warm_up()
        digest = os.urandom(32)
        pow_rate = await _pool_rate(
            pool, lambda c, p: asyncio.ensure_future(
                pool.solve_pow(digest, IMPOSSIBLE, cancelled=c, progress=p)), seconds)
        vanity_rate = 0.0
        if vanity_too:
            vanity_rate = await _pool_rate(
                pool, lambda c, p: asyncio.ensure_future(
                    pool.vanity_seed("zzzzzzzzzzzz", cancelled=c, progress=p)), seconds)
        return pow_rate, vanity_rate
    finally:
        pool.close()


# --- the table ------------------------------------------------------------------


@dataclass
class Row:
    name: str
    unit: str
    values: list[float]
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""

    def best(self) -> float:
        return max(self.values) if self.higher_is_better else min(self.values)

    def worst(self) -> float:
        return min(self.values) if self.higher_is_better else max(self.values)

    def verdict(self) -> str:
        if self.target is None:
            return ""
        ok = self.best() >= self.target if self.higher_is_better else self.best() <= self.target
        return "pass" if ok else "MISS"


def fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f} M"
    if v >= 1e4:
        return f"{v / 1e3:.1f} k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def print_table(rows: list[Row], repeat: int) -> None:
    head = ("figure", "best", "spread (worst..best)", "unit", "target", "result")
    cells = []
    for r in rows:
        target = "" if r.target is None else ("≥ " if r.higher_is_better else "≤ ") + fmt(r.target)
        spread = f"{fmt(r.worst())}..{fmt(r.best())}" if repeat > 1 else ""
        cells.append((r.name, fmt(r.best()), spread, r.unit, target, r.verdict()))
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
    notes = [f"  {r.name}: {r.note}" for r in rows if r.note]
    if notes:
        print("\nnotes:")
        print("\n".join(notes))


def _session_rows(seal_us: list[float], open_us: list[float],
                  figs: list[SessionFigures]) -> list[Row]:
    """Version 1's seal and open, then the session layer's figures beside them."""
    return [
        Row("seal, 1 KiB payload", "µs", seal_us, higher_is_better=False),
        Row("open, 1 KiB payload", "µs", open_us, higher_is_better=False),
        Row("session: handshake, initiator", "µs", [f.initiate for f in figs],
            higher_is_better=False,
            note="verify the hybrid prekey, ML-KEM encapsulate, 4 X25519, first root step"),
        Row("session: handshake, responder", "µs", [f.respond for f in figs],
            higher_is_better=False, note="parse, ML-KEM decapsulate, 3 X25519, open identity"),
        Row("session: encrypt, 1 KiB", "µs", [f.encrypt for f in figs], higher_is_better=False),
        Row("session: decrypt, 1 KiB", "µs", [f.decrypt for f in figs], higher_is_better=False),
        Row("session: decrypt with a DH step", "µs", [f.decrypt_step for f in figs],
            higher_is_better=False, note="a conversation in turns: one X25519 per message"),
        Row("session: decrypt + inner signature", "µs", [f.open_signed for f in figs],
            higher_is_better=False, note="what version 2 adds to the stamp check"),
        Row("  that / version 1 open", "×",
            [f.open_signed / o for f, o in zip(figs, open_us, strict=True)], 1.5,
            higher_is_better=False),
        Row("  session opens per second", "msg/s", [1e6 / f.open_signed for f in figs], 5000,
            note="decrypt + inner signature, one core (CPU time)"),
        Row("  with a DH step / version 1 open", "×",
            [(f.decrypt_step + f.open_signed - f.decrypt) / o
             for f, o in zip(figs, open_us, strict=True)], higher_is_better=False,
            note="every message a turn of the conversation: one X25519 more"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="measure each figure N times")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each rate measurement")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--envelopes", type=int, default=200, help="pre-made envelopes to open")
    ap.add_argument("--sessions", action="store_true",
                    help="only version 1's seal/open and the session rows")
    args = ap.parse_args(argv)
    if args.sessions:
        runs = []
        for _ in range(args.repeat):
            s, o = seal_open_us()
            runs.append((s, o, session_figures()))
        print_table(_session_rows([r[0] for r in runs], [r[1] for r in runs],
                                  [r[2] for r in runs]), args.repeat)
        return 0

    cpus = os.cpu_count() or 1
    load = os.getloadavg()
    print(f"ParanoIM core benchmark · Python {platform.python_version()} · "
          f"blake3 {getattr(blake3, '__version__', '?')} · {cpus} CPUs · "
          f"{args.workers} workers · load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"default difficulty: {DEFAULT_BASE_BITS} bits for a 256-byte bucket living one hour\n")

    bob, raws = make_envelopes(args.envelopes, senders=16)
    _, raws_distinct = make_envelopes(args.envelopes, senders=args.envelopes)

    one_cpu, one_wall, naive, ver, seal_us, open_us = [], [], [], [], [], []
    opened_warm, opened_cold, van_one, all_pow, all_van, speedup = [], [], [], [], [], []
    one_pool: list[float] = []
    sessions: list[SessionFigures] = []
    for _ in range(args.repeat):
        cpu_rate, wall_rate = pow_one_core(args.seconds)
        one_cpu.append(cpu_rate)
        one_wall.append(wall_rate)
        naive.append(pow_per_nonce(args.seconds / 2))
        ver.append(verify_us())
        s, o = seal_open_us()
        seal_us.append(s)
        open_us.append(o)
        sessions.append(session_figures())
        opened_warm.append(opened_per_second(bob, raws, cold=False))
        opened_cold.append(opened_per_second(bob, raws_distinct, cold=True))
        van_one.append(vanity_one_core(args.seconds / 2))
        # the speed-up compares the pool with itself at one worker, measured just
        # before, so both sides pay the same overheads and see about the same load
        p1, _ = asyncio.run(pool_rates(1, args.seconds, vanity_too=False))
        p, v = asyncio.run(pool_rates(args.workers, args.seconds))
        one_pool.append(p1)
        all_pow.append(p)
        all_van.append(v)
        speedup.append(p / p1)

    ratio = [a / b for a, b in zip(one_cpu, naive, strict=True)]
    ratio_all = [a / b for a, b in zip(all_pow, naive, strict=True)]
    rows = [
        Row("PoW, one core (CPU time)", "cand/s", one_cpu, 40e6,
            note="pow.solve_range over one large range at an impossible difficulty"),
        Row("PoW, one core (wall clock)", "cand/s", one_wall),
        Row("PoW, per-nonce Python loop", "cand/s", naive,
            note="pow.solve_per_nonce, the baseline"),
        Row("  bulk / per-nonce", "×", ratio),
        Row("PoW, pool of 1 worker (wall)", "cand/s", one_pool),
        Row(f"PoW, all cores ({args.workers} workers, wall)", "cand/s", all_pow,
            note="WorkerPool.solve_pow, rate from Progress between completed ranges"),
        Row("  all cores / per-nonce", "×", ratio_all),
        Row(f"  speedup, {args.workers} workers / 1 worker", "×", speedup,
            1.8 if args.workers == 2 else None,
            note="both pools in wall time; needs the cores to be otherwise idle"),
        Row("PoW verify (pow.work_bits)", "µs", ver, 1.5, higher_is_better=False),
        *_session_rows(seal_us, open_us, sessions)[:2],
        Row("verified+opened, 16 senders", "env/s", opened_warm, 5000,
            note="check_envelope + open_envelope + parse_record, one core (CPU time)"),
        Row("verified+opened, all new senders", "env/s", opened_cold,
            note="every sender's key validated afresh (no cache hit)"),
        *_session_rows(seal_us, open_us, sessions)[2:],
        Row("vanity, one core (CPU time)", "keys/s", van_one),
        Row(f"vanity, all cores ({args.workers} workers, wall)", "keys/s", all_van),
    ]
    print_table(rows, args.repeat)
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
