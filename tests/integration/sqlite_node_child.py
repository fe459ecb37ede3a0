"""Child process for the kill -9 test: a node on an SQLite store that publishes
envelopes read from stdin (hex, one a line) and prints ``ok <id>`` once each is
acknowledged (``publish`` returned, so its transaction is committed)."""

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
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        env = await node.publish(bytes.fromhex(line.strip()))
        print(f"ok {env.id.hex()}", flush=True)
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
