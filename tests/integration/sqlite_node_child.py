"""Child process for the kill -9 test: a node on an SQLite store that publishes
envelopes read from stdin (hex, one a line), up to 64 at once so that group
commits gather several, and prints ``ok <id>`` once each is acknowledged
(``publish`` returned, so its transaction is committed and fsynced)."""

from __future__ import annotations

import asyncio
import sys

from bridge.net.node import Node
from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import fast_config


async def main(path: str) -> None:
    node = Node(fast_config(), store=SQLiteStore(path))
    await node.start()
    print(f"ready {len(node.store)}", flush=True)
    loop = asyncio.get_running_loop()
    room = asyncio.Semaphore(64)
    running: set[asyncio.Task[None]] = set()

    async def publish(raw: bytes) -> None:
        try:
            env = await node.publish(raw)
            print(f"ok {env.id.hex()}", flush=True)
        finally:
            room.release()

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        await room.acquire()
        task = asyncio.create_task(publish(bytes.fromhex(line.strip())))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
