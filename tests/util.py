"""Helpers for tests of every layer: deadlines, free ports, the CI skip policy."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import pytest

from tests.interop.drivers._common import find_program, free_tcp_port, port_accepts

__all__ = [
    "free_tcp_port",
    "in_ci",
    "port_accepts",
    "require_programs",
    "skip_or_fail",
    "wait_until",
]

T = TypeVar("T")


async def wait_until(
    predicate: Callable[[], T] | Callable[[], Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value, and return it.

    Fails with ``TimeoutError`` naming ``message`` (or the predicate) after ``timeout``
    seconds. The event loop keeps running between polls, so servers in the same loop progress.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise TimeoutError(f"condition not met within {timeout:g}s: {what}")
        await asyncio.sleep(interval)


def in_ci() -> bool:
    """True when the CI variable is set (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason`` locally; in CI a missing prerequisite is a failure, not a skip."""
    if in_ci():
        pytest.fail(f"CI must run this test, but: {reason}", pytrace=False)
    pytest.skip(reason)


def require_programs(*programs: str | tuple[str, str]) -> None:
    """Skip (locally) or fail (in CI) unless every program is installed.

    Each item is a program name or ``(program, debian_package)``.
    """
    missing: list[str] = []
    for item in programs:
        program, package = item if isinstance(item, tuple) else (item, item)
        try:
            find_program(program, package)
        except FileNotFoundError:
            missing.append(f"{program} (Debian package {package})")
    if missing:
        skip_or_fail("not installed: " + ", ".join(missing) + " — run scripts/test.sh as root")
