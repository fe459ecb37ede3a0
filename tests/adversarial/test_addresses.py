"""Peer exchange under attack: one link sends 1,000 junk addresses (loopback
addresses on which the attacker listens, so every dial is seen) to a real
``paranoim run``. They are never passed on; with ``dial_private = false`` none
is dialled; left unset on a node bound to loopback (so loopback is its own
range), they are dialled at the discovery rate only, from the few buckets one
source can fill."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bridge.core.addrbook import BUCKET_SIZE, NEW_PER_SOURCE
from bridge.net.dialer import DIAL_BURST, DIAL_RATE
from tests.adversarial.slots_support import honest_connect, start_attacker, stop_attacker
from tests.daemonproc import Paranoim, Running

JUNK = 1000
ROUNDS = 2  # maintenance rounds the node runs after the flood before we look


def wait_count(run: Running, line: str, n: int, timeout: float) -> None:
    """Until ``run`` has printed ``line`` ``n`` times (it prints as things happen)."""
    deadline = time.monotonic() + timeout
    while sum(x == line for x in run.stdout) < n:
        assert run.proc.poll() is None and time.monotonic() < deadline, run.stderr
        time.sleep(0.02)


@pytest.mark.parametrize("dial_private", ["false", None])
async def test_junk_addresses_are_not_passed_on_nor_dialled_beyond_the_rate(
        pim: Paranoim, free_port: Callable[[], int], dial_private: str | None) -> None:
    extra = "" if dial_private is None else f"dial_private = {dial_private}\n"
    pim.write_config(f'[p2p]\nlisten = "127.0.0.1"\n{extra}')
    pim.start_daemon(free_port=free_port)
    port = int(pim.runtime()["ports"]["p2p"])  # type: ignore[index]
    attacker = start_attacker("flood", str(port), str(JUNK))
    try:
        attacker.wait_for("ready", 60)  # a loaded machine: minutes of CPU queue
        start = time.monotonic()
        # each round the node reconciles with its one full peer, the attacker: its
        # maintenance (discovery included) has run that many times since the flood
        wait_count(attacker, "round", ROUNDS, 30)
        _, offered = await honest_connect(port)
        assert not any(a.startswith("127.77.") for a in offered)  # never passed on
        assert pim.run("status", timeout=20).returncode == 0
    finally:
        stats = stop_attacker(attacker)
    seconds = time.monotonic() - start
    if dial_private == "false":
        assert stats["dialled"] == 0, attacker.stdout
    else:
        # bounded by what one source can store and by the dial rate over the attack; a
        # dial is up to two connections (the HTTP client retries one closed unanswered)
        dials = DIAL_BURST + DIAL_RATE * seconds
        assert 0 < stats["dialled"] <= 2 * min(NEW_PER_SOURCE * BUCKET_SIZE, dials), (
            attacker.stdout)
