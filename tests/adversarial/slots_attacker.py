"""An attacker process against a node's connection slots and address book.

    python -m tests.adversarial.slots_attacker idle  PORT N one|spread
    python -m tests.adversarial.slots_attacker hello PORT N one|spread
    python -m tests.adversarial.slots_attacker churn PORT N one|spread
    python -m tests.adversarial.slots_attacker flood PORT N

``idle``: N WebSockets to ``/p2p`` that never send a frame, each reopened as
soon as the node closes it. ``hello``: the same, but each sends a valid HELLO
first and then nothing. ``churn``: as ``hello``, but a refused connection is
tried again at once, never after a pause: reconnecting as fast as it can, with
more sockets than the node has slots. ``one`` connects from 127.0.0.1 (the address Tor and
local programs share), ``spread`` from N different /24s (127.50.i.1).
``flood``: one link that sends N junk addresses in PEERS frames — all loopback
addresses 127.77.x.y:port on which this process listens, counting every
connection the node makes to them — and answers reconciliation, printing
``round`` each time the node starts one (its maintenance ran).

Prints ``ready`` once the attack is in place; on end of stdin prints
``stats key=value ...`` (connects made, attempts refused, attacker CPU seconds, peak RSS in KiB,
connections the node made to the junk) and exits.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time

import aiohttp

from bridge.core import gossip_wire as w
from bridge.core.reconcile import Reconciler
from bridge.store.index import SortedIndex


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def hello(listen: str = "") -> bytes:
    return w.encode(w.Hello(w.PROTOCOL_VERSION, 8, int(time.time()), os.urandom(16), False,
                            listen))


class Attack:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/p2p"
        self.connects = 0
        self.refused = 0
        self.open = 0
        self.dialled = 0
        self.ready = asyncio.Event()

    async def hold(self, src: str, send_hello: bool, n: int, pause: float = 0.05,
                   churn: bool = False) -> None:
        """Keep one WebSocket open from ``src``, reopening it whenever it is closed.
        Ready: ``n`` links are held at once (idle, hello), or — churning — the node has
        refused ``n`` attempts."""
        conn = aiohttp.TCPConnector(local_addr=(src, 0), force_close=True)
        async with aiohttp.ClientSession(connector=conn) as s:
            while True:
                try:
                    ws = await s.ws_connect(self.url, max_msg_size=w.MAX_FRAME_SIZE,
                                            autoping=True)
                except (aiohttp.ClientError, OSError):
                    self.refused += 1
                    if churn and self.refused >= n:
                        self.ready.set()  # the node has begun refusing: the attack is on
                    await asyncio.sleep(pause)  # refused (403, or cut at accept): again
                    continue
                self.connects += 1
                self.open += 1
                if self.open >= n if not churn else self.connects >= n:
                    self.ready.set()
                try:
                    if send_hello:
                        await ws.send_bytes(hello())
                    async for _ in ws:  # read and ignore whatever the node sends
                        pass
                finally:
                    self.open -= 1
                    await ws.close()

    async def listen_junk(self, n: int) -> list[str]:
        """Listeners on n loopback addresses; every connection to one is counted and closed."""
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.dialled += 1
            host, port = writer.get_extra_info("sockname")[:2]
            out(f"dialled {host}:{port} {time.monotonic():.2f}")
            writer.close()

        probe = await asyncio.start_server(accepted, "127.77.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        addrs = ["127.77.0.1"] + [f"127.77.{i // 250}.{i % 250 + 1}" for i in range(1, n)]
        self.servers = [probe] + [await asyncio.start_server(accepted, a, port)
                                  for a in addrs[1:]]
        return [f"{a}:{port}" for a in addrs]

    async def flood(self, n: int) -> None:
        junk = await self.listen_junk(n)
        responder = Reconciler(SortedIndex(), initiator=False)
        async with aiohttp.ClientSession() as s, s.ws_connect(
                self.url, max_msg_size=w.MAX_FRAME_SIZE) as ws:
            self.connects += 1
            await ws.send_bytes(hello())
            for i in range(0, len(junk), w.MAX_PEERS):
                await ws.send_bytes(w.encode(w.Peers(tuple(junk[i:i + w.MAX_PEERS]))))
            self.ready.set()
            async for msg in ws:
                m = w.parse(msg.data)
                if isinstance(m, w.Reconcile) and not m.reply:
                    reply = responder.receive(m.payload)
                    if reply is not None:
                        await ws.send_bytes(w.encode(w.Reconcile(reply, reply=True,
                                                                 prefix=m.prefix)))
                    out("round")


async def main(argv: list[str]) -> None:
    mode, port, n = argv[0], int(argv[1]), int(argv[2])
    attack = Attack(port)
    if mode == "flood":
        tasks = [asyncio.create_task(attack.flood(n))]
    else:
        srcs = (["127.0.0.1"] * n if argv[3] == "one"
                else [f"127.50.{i}.1" for i in range(n)])
        pause = 0.0 if mode == "churn" else 0.05
        tasks = [asyncio.create_task(attack.hold(src, mode != "idle", n, pause,
                                                 churn=mode == "churn"))
                 for src in srcs]
    await attack.ready.wait()
    out("ready")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out(f"stats connects={attack.connects} refused={attack.refused} "
        f"cpu={ru.ru_utime + ru.ru_stime:.2f} "
        f"rss_kib={ru.ru_maxrss} dialled={attack.dialled}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
