"""A spammer with a fixed budget of work, run as its own process against a real daemon.

    python -m tests.adversarial.store_attacker HOST:PORT BUDGET BASE_BITS

It opens one gossip link, prints ``started``, then makes week-long envelopes of
the largest size at exactly the minimum the victim requires (the cheapest way to
hold a store's bytes for a week: under "earliest expiry first" they locked every
two-day message out) and hands each over as soon as it is solved, until the
next one would pass BUDGET units of work (a unit: one candidate hash, so an
envelope of D bits costs 2^D). Then it asks for its last envelope back, so the
victim has taken in everything before it reports. It prints one JSON line:
envelopes, bytes, work, CPU seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time

import aiohttp

from bridge.core.envelope import envelope_id
from bridge.core.gossip_wire import EnvelopeBody, Want, encode, parse
from tests.adversarial.gossip_attacker import Stats, hand_over, open_link
from tests.store_support import priced, work

WEEK = 7 * 86_400


async def attack(addr: str, budget: int, base_bits: int) -> dict[str, object]:
    spent = sent = sent_bytes = 0
    last = b""
    confirmed = False
    async with aiohttp.ClientSession() as session:
        ws = await open_link(session, addr, light=False, stats=Stats())
        if ws is None:
            raise SystemExit("the victim refused the link")
        print("started", flush=True)
        while True:
            env = priced(int(time.time()), ttl=WEEK, bucket=65536, base_bits=base_bits)
            if spent + work(env) > budget:
                break
            spent += work(env)
            await hand_over(ws, env.raw, env.id)
            last = env.raw
            sent += 1
            sent_bytes += len(env.raw)
        # The victim handles a link's frames in order: once it serves the last body,
        # it has stored (or refused) every one before it.
        if last:
            await ws.send_bytes(encode(Want((envelope_id(last),))))
            with contextlib.suppress(TimeoutError):
                confirmed = await asyncio.wait_for(_served(ws, last), 60)
        await ws.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"envelopes": sent, "bytes": sent_bytes, "work": spent, "confirmed": confirmed,
            "cpu_s": ru.ru_utime + ru.ru_stime}


async def _served(ws: aiohttp.ClientWebSocketResponse, raw: bytes) -> bool:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY:
            return False
        m = parse(msg.data)
        if isinstance(m, EnvelopeBody) and m.raw == raw:
            return True
    return False


def main() -> None:
    addr, budget, base_bits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(attack(addr, budget, base_bits))), flush=True)


if __name__ == "__main__":
    main()
