"""The shared test helpers keep their promises: deadlines, free ports, the CI rule."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.interop.drivers._common import DriverTimeout, poll_until
from tests.util import free_tcp_port, in_ci, port_accepts, wait_until


async def test_wait_until_returns_the_first_truthy_value() -> None:
    calls: list[int] = []

    def predicate() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert await wait_until(predicate, timeout=5, interval=0.001) == 3


async def test_wait_until_awaits_async_predicates_and_lets_the_loop_run() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, done.set)

    async def predicate() -> bool:
        return done.is_set()

    assert await wait_until(predicate, timeout=5) is True


async def test_wait_until_times_out_with_the_message() -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="the thing"):
        await wait_until(lambda: False, timeout=0.1, message="the thing")
    assert time.monotonic() - start < 2


def test_poll_until_times_out_with_diagnostics() -> None:
    with pytest.raises(DriverTimeout, match="extra words"):
        poll_until(lambda: None, 0.05, "nothing", interval=0.01, on_timeout=lambda: "extra words")


def test_free_ports_are_distinct_and_bindable(free_port) -> None:  # type: ignore[no-untyped-def]
    ports = {free_port() for _ in range(20)} | {free_tcp_port()}
    assert len(ports) == 21
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
        assert not port_accepts(port)


def test_port_accepts_sees_a_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert port_accepts(s.getsockname()[1])


def test_data_dir_is_private_and_empty(data_dir) -> None:  # type: ignore[no-untyped-def]
    assert data_dir.is_dir()
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("0", False), ("false", False), ("true", True), ("1", True), ("yes", True)],
)
def test_in_ci_reads_the_ci_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected
