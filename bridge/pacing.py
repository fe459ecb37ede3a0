"""Driving a throttle from the core (``core.chatstate``, ``core.actqueue``): sleep
for each ``Wait``, hand each send step to the caller, end at ``Done``. The one loop
behind chat states, acts and presences."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bridge.core.chatstate import Done, Wait

S = TypeVar("S")


async def pace(step: Callable[[float], Wait | Done | S],
               send: Callable[[S], Awaitable[None]]) -> None:
    """Until the throttle says ``Done``: wait what it says, send what it gives."""
    while True:
        now = step(time.monotonic())
        if isinstance(now, Done):
            return
        if isinstance(now, Wait):
            await asyncio.sleep(now.seconds)
            continue
        await send(now)
