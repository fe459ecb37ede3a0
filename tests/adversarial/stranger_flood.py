"""An attacker: many fresh identities each write first to one address, as cheaply as
the victim's node allows, pushed over a real gossip link to the victim's P2P port.

    python -m tests.adversarial.stranger_flood VICTIM_ADDRESS HOST:PORT COUNT BITS

It runs a node of this project's own code (what an attacker with the source would do),
peers with the victim, publishes COUNT envelopes and prints ``published``; it keeps the
link up (gossip and reconciliation carry the rest) until its standard input closes, then
prints one JSON line: what it sent and its CPU time.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

from bridge.core import crypto, tags
from bridge.core.address import decode_address
from bridge.core.checks import stamp_inline
from bridge.core.envelope import Kind
from bridge.core.identity import Identity
from bridge.core.records import DirectMessage
from bridge.core.seal import seal
from bridge.net.node import Node, NodeConfig


def first_contact(victim: bytes, now: int, bits: int, i: int) -> bytes:
    me = Identity.from_seed(os.urandom(32))
    raw = seal(sender_secret_key=me.secret_key, sender=me.public, recipient=victim,
               kex_public=crypto.ed25519_to_x25519_public(victim), kind=Kind.DIRECT,
               tag=tags.address_tag(victim, tags.epoch_of(now)), expiry=now + 3600,
               payload=DirectMessage(now * 1000, f"buy now {i}", False, "", None).encode(),
               ephemeral_secret=os.urandom(32))
    return stamp_inline(raw, now=now, base_bits=bits)


async def main(address: str, peer: str, count: int, bits: int) -> None:
    victim = decode_address(address)
    now = int(time.time())
    envelopes = [first_contact(victim, now, bits, i) for i in range(count)]
    node = Node(NodeConfig(port=0, base_bits=bits, bootstrap=[peer], peer_exchange=False,
                           anti_entropy_interval=1.0))
    await node.start()
    try:
        deadline = time.monotonic() + 30
        while not node.active_conns():
            if time.monotonic() > deadline:
                raise SystemExit("the victim's node never linked")
            await asyncio.sleep(0.05)  # no event for "linked" from outside the node
        for raw in envelopes:
            await node.publish(raw)
        print("published", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await node.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"sent": count, "bytes": sum(map(len, envelopes)),
                      "cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)


if __name__ == "__main__":
    addr, hp, n, b = sys.argv[1:5]
    asyncio.run(main(addr, hp, int(n), int(b)))
