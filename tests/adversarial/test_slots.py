"""Connection slots under attack: 64 WebSockets that never say HELLO (or say it and
then nothing), from one address or from 64 networks, against a real ``paranoim
run``; an honest peer still gets in within 5 s, and ``status`` answers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.adversarial.slots_support import honest_connect, start_attacker, stop_attacker
from tests.daemonproc import Paranoim

SOCKETS = 64
HONEST_WITHIN = 5.0


@pytest.mark.parametrize(("mode", "sources"), [
    ("idle", "one"),  # 127.0.0.1: in no per-IP cap (Tor's address)
    ("idle", "spread"),  # 64 /24s: the caps do not bite, eviction must
    ("hello", "one"),  # finished HELLO, then silence
])
async def test_an_honest_peer_gets_in_while_64_sockets_hold_the_slots(
        pim: Paranoim, free_port: Callable[[], int], mode: str, sources: str) -> None:
    pim.start_daemon(free_port=free_port)
    port = int(pim.runtime()["ports"]["p2p"])  # type: ignore[index]
    attacker = start_attacker(mode, str(port), str(SOCKETS), sources)
    try:
        attacker.wait_for("ready", 60)  # a loaded machine: minutes of CPU queue
        latency, _ = await honest_connect(port)
        assert latency < HONEST_WITHIN
        assert pim.run("status", timeout=20).returncode == 0
    finally:
        stats = stop_attacker(attacker)
    assert stats["connects"] >= SOCKETS
