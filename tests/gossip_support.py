"""Valid envelopes for gossip and store tests, stamped at a low difficulty.

The bodies are random bytes (relays never open them); the header and the proof
of work are real, built with the core's own functions.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from bridge.core import crypto, pow
from bridge.core.checks import pow_bits_required
from bridge.core.envelope import (
    Envelope,
    Kind,
    assemble,
    parse_envelope,
    pow_digest,
    signed_header,
    with_nonce,
)
from bridge.net.node import Node, NodeConfig

LOW_BITS = 4  # base difficulty used by the tests: a few dozen hashes per envelope


def make_envelope(
    now: int,
    *,
    ttl: int = 3600,
    tag: bytes | None = None,
    bucket: int = 256,
    base_bits: int = LOW_BITS,
    expiry: int | None = None,
    weak: bool = False,
) -> Envelope:
    """A valid envelope (or one whose PoW is one bit short, with ``weak``)."""
    header = signed_header(Kind.DIRECT, tag or os.urandom(16), expiry or now + ttl)
    ct = os.urandom(bucket + crypto.AEAD_TAG_SIZE)
    raw = assemble(header, os.urandom(32), ct)
    env = parse_envelope(raw)
    need = pow_bits_required(env, now, base_bits)
    digest = pow_digest(raw)
    if weak:
        nonce = next(n for n in range(1 << 16) if pow.work_bits(digest, n) < need)
    else:
        found = pow.solve_range(digest, need, 0, 1 << 20)
        assert found is not None
        nonce = found
    return parse_envelope(with_nonce(raw, nonce))


def fast_config(**kw: object) -> NodeConfig:
    """Node settings for loopback tests: low PoW, quick anti-entropy and backoff."""
    base: dict[str, object] = dict(
        base_bits=LOW_BITS,
        anti_entropy_interval=0.3,
        backoff_min=0.05,
        backoff_max=0.5,
        announce_delay=0.005,
        target_peers=0,
    )
    base.update(kw)
    return NodeConfig(**base)  # type: ignore[arg-type]


async def start_nodes(n: int, **kw: object) -> list[Node]:
    nodes = [Node(fast_config(**kw)) for _ in range(n)]
    for node in nodes:
        await node.start()
    return nodes


async def stop_all(nodes: list[Node]) -> None:
    await asyncio.gather(*(n.stop() for n in nodes if n.started), return_exceptions=True)


async def wait_all(nodes: list[Node], pred: Callable[[Node], bool], timeout: float) -> None:
    """Wait, without polling, until ``pred`` holds on every node."""
    async with asyncio.timeout(timeout):
        for node in nodes:
            await node.wait_for(lambda node=node: pred(node), timeout)


def has_all(ids: set[bytes]) -> Callable[[Node], bool]:
    return lambda node: all(i in node.store for i in ids)


def linked(k: int) -> Callable[[Node], bool]:
    return lambda node: len(node.active_conns()) >= k
