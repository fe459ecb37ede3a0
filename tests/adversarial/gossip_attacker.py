"""A hostile gossip peer, run as its own process against a real daemon's P2P port.

    python -m tests.adversarial.gossip_attacker ATTACK HOST:PORT SECONDS [LINKS]

It speaks the gossip wire with ``bridge.core.gossip_wire`` over aiohttp
WebSockets, prints ``started`` once its links are up (HELLO answered), attacks
for SECONDS, then prints one JSON line: what it cost (CPU seconds, frames and
bytes sent) and what it saw (links the victim closed, BYE reasons).

Attacks:
  want   128 envelopes of 64 KiB handed over, then WANT frames for them, round and
         round, on LINKS links that never read what comes back;
  have   HAVE frames announcing random ids, never delivered, on LINKS links;
  watch  a light peer sending WATCH_SHARD frames (each would start a reconciliation of
         the whole store), as fast as it can;
  peers  PEERS frames of 32 junk addresses, as fast as it can;
  light  LINKS light peers opened at once and held.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter

import aiohttp

from bridge.core.gossip_wire import (
    MAX_FRAME_SIZE,
    MAX_IDS,
    MAX_PEERS,
    PROTOCOL_VERSION,
    Bye,
    EnvelopeBody,
    Have,
    Hello,
    Peers,
    Want,
    WatchShard,
    encode,
    parse,
)
from bridge.core.shards import ALL
from tests.gossip_support import make_envelope

WANT_BODIES = 128


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.closed = 0
        self.byes: Counter[str] = Counter()
        self.refused = 0


async def open_link(session: aiohttp.ClientSession, addr: str, *, light: bool,
                    stats: Stats) -> aiohttp.ClientWebSocketResponse | None:
    try:
        ws = await session.ws_connect(f"http://{addr}/p2p", max_msg_size=MAX_FRAME_SIZE)
    except aiohttp.ClientError:
        stats.refused += 1
        return None
    hello = Hello(PROTOCOL_VERSION, 1, int(time.time()), os.urandom(16), light, "")
    await ws.send_bytes(encode(hello))
    msg = await ws.receive(10)
    if msg.type != aiohttp.WSMsgType.BINARY or not isinstance(parse(msg.data), Hello):
        stats.refused += 1
        return None
    return ws


async def pump(ws: aiohttp.ClientWebSocketResponse, frames: list[bytes], until: float,
               stats: Stats) -> None:
    """Send ``frames`` round and round until ``until`` or the victim closes the link."""
    k = 0
    try:
        while time.monotonic() < until and not ws.closed:
            f = frames[k % len(frames)]
            k += 1
            await ws.send_bytes(f)
            stats.frames += 1
            stats.bytes += len(f)
            await asyncio.sleep(0)  # yield: the socket's buffer is what bounds us
    except (ConnectionError, aiohttp.ClientError, RuntimeError):
        pass
    if ws.closed:
        stats.closed += 1


async def drain(ws: aiohttp.ClientWebSocketResponse, stats: Stats) -> None:
    """Read and note BYEs (used by attacks that do read)."""
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x09":
            bye = parse(msg.data)
            assert isinstance(bye, Bye)
            stats.byes[bye.reason.name] += 1


async def hand_over(ws: aiohttp.ClientWebSocketResponse, raw: bytes, eid: bytes) -> None:
    """Announce one envelope and answer the victim's WANT with its body."""
    await ws.send_bytes(encode(Have((eid,))))
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY:
            break
        m = parse(msg.data)
        if isinstance(m, Want) and eid in m.ids:
            await ws.send_bytes(encode(EnvelopeBody(raw)))
            return
    raise SystemExit("the victim never asked for the envelope")


async def attack(kind: str, addr: str, seconds: float, links: int) -> dict[str, object]:
    stats = Stats()
    opened_total = 0
    open_at_end = 0
    async with aiohttp.ClientSession() as session:
        light = kind in ("watch", "light")
        if kind == "want":
            frames = []
        elif kind == "have":
            frames = [encode(Have(tuple(os.urandom(32) for _ in range(MAX_IDS))))
                      for _ in range(64)]
        elif kind == "watch":
            frames = [encode(WatchShard(ALL))]
        elif kind == "peers":
            frames = [encode(Peers(tuple(f"10.{k}.{j}.1:4506{j % 10}"
                                         for j in range(MAX_PEERS)))) for k in range(64)]
        else:
            frames = []
        opened = await asyncio.gather(
            *(open_link(session, addr, light=light, stats=stats) for _ in range(links)))
        wss = [w for w in opened if w is not None]
        opened_total = len(wss)
        if kind == "want":
            for _ in range(WANT_BODIES):
                env = make_envelope(int(time.time()), bucket=65536, base_bits=1)
                await hand_over(wss[0], env.raw, env.id)
                frames.append(encode(Want((env.id,))))
            await asyncio.sleep(0.5)  # stored and committed (RAM: at once)
        print("started", flush=True)
        until = time.monotonic() + seconds
        if kind == "light":
            readers = [asyncio.create_task(drain(w, stats)) for w in wss]
            await asyncio.sleep(seconds)
            open_at_end = sum(1 for w in wss if not w.closed)
            for t in readers:
                t.cancel()
        elif kind == "want":  # never reads: the victim's answers pile up, if it lets them
            await asyncio.gather(*(pump(w, frames, until, stats) for w in wss))
            open_at_end = sum(1 for w in wss if not w.closed)
        else:  # reads (to see BYEs) and comes back with a fresh node id when dropped
            async def worker(ws: aiohttp.ClientWebSocketResponse | None) -> None:
                nonlocal opened_total
                while time.monotonic() < until:
                    if ws is None:
                        ws = await open_link(session, addr, light=light, stats=stats)
                        if ws is None:
                            await asyncio.sleep(0.2)
                            continue
                        opened_total += 1
                    reader = asyncio.create_task(drain(ws, stats))
                    await pump(ws, frames, until, stats)
                    reader.cancel()
                    ws = None  # dropped by the victim (or time is up): come back as another
            await asyncio.gather(*(worker(w) for w in wss))
            open_at_end = sum(1 for w in wss if not w.closed)
        for w in wss:
            w._response.close()  # type: ignore[attr-defined]  # no goodbye, as a crash
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"attack": kind, "links": opened_total, "refused": stats.refused,
            "frames": stats.frames, "bytes": stats.bytes, "closed_by_victim": stats.closed,
            "open_at_end": open_at_end, "byes": dict(stats.byes),
            "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}


def main() -> None:
    kind, addr, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    links = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    print(json.dumps(asyncio.run(attack(kind, addr, seconds, links))), flush=True)


if __name__ == "__main__":
    main()
