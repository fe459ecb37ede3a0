"""The daemon's pieces in one process, with real sockets: a start that fails half-way
stops what had started in reverse order and frees every port and the lock; taking
the data directory's lock leaves the event loop free; "Pause network" drops and
restores real peer links; errors cross the control channel as their own classes,
looked up in a fixed table only."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from bridge.config import Config
from bridge.control import (
    ControlClient,
    DaemonFailedError,
    DaemonNotRunningError,
    DataDirLock,
    Runtime,
    error_kind,
    take_daemon_lock,
)
from bridge.core.errors import AddressChecksumError, UserError
from bridge.daemon import Daemon, NetworkPause
from bridge.net.node import Node, NodeConfig
from bridge.paths import runtime_file
from bridge.store.keystore import WrongPassphraseError
from bridge.xmpp.component import ComponentError
from tests.util import wait_until


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_a_failed_start_stops_what_started_in_reverse(
        data_dir: Path, free_port: Callable[[], int], caplog: pytest.LogCaptureFixture) -> None:
    xmpp, web_port, p2p, dead = free_port(), free_port(), free_port(), free_port()
    cfg = Config(xmpp_port=xmpp, web_port=web_port, p2p_port=p2p, p2p_listen="127.0.0.1",
                 difficulty=8, component_domain="p2p.example.org",
                 component_server=f"127.0.0.1:{dead}", component_secret="s3cret")
    daemon = Daemon(cfg, data_dir, pool_workers=1)
    caplog.set_level(logging.DEBUG, logger="bridge.daemon")
    with pytest.raises(ComponentError, match=f"127.0.0.1:{dead}"):
        await daemon.start()

    started = [r.getMessage().split(" started in ")[0] for r in caplog.records
               if " started in " in r.getMessage()]
    stopped = [r.getMessage().split(" stopped in ")[0] for r in caplog.records
               if " stopped in " in r.getMessage()]
    assert started[:2] == ["data directory lock", "worker pool"]
    assert "XMPP listener" in started and "web UI" not in started
    # the component failed in its start: it is stopped too, first, then the rest in reverse
    assert stopped == ["XMPP component", *reversed(started)]
    assert all(_bindable(port) for port in (xmpp, p2p, web_port))
    lock = DataDirLock(data_dir)
    assert lock.try_acquire()
    lock.release()
    assert not runtime_file(data_dir).exists()


async def test_taking_the_lock_leaves_the_loop_free(data_dir: Path) -> None:
    """Another command holds the lock for a moment: the daemon waits for it without
    stopping the event loop (which then keeps serving everything else)."""
    holder = DataDirLock(data_dir)
    assert holder.try_acquire()
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks == 10:  # the loop ran ten times while the lock was waited for
                holder.release()

    beat = asyncio.ensure_future(heartbeat())
    try:
        lock = await asyncio.wait_for(take_daemon_lock(data_dir, timeout=5), 8)
    finally:
        beat.cancel()
    assert ticks >= 10
    lock.release()


async def test_pause_network_drops_and_restores_real_links() -> None:
    """What the tray's "Pause network" does."""
    quiet = {"target_peers": 0, "backoff_min": 0.05, "backoff_max": 0.2}  # no rediscovery
    b = Node(NodeConfig(port=0, **quiet))  # type: ignore[arg-type]
    await b.start()
    a = Node(NodeConfig(port=0, bootstrap=[f"127.0.0.1:{b.port}"], **quiet))  # type: ignore[arg-type]
    await a.start()
    try:
        await wait_until(lambda: a.peers(), 10, message="A linked to B")
        pause = NetworkPause(a)
        pause.set(True)
        assert pause.peers == [f"127.0.0.1:{b.port}"]
        await wait_until(lambda: not a.peers() and not b.peers(), 10, message="links dropped")
        pause.set(False)
        assert pause.peers is None
        await wait_until(lambda: a.peers(), 10, message="A linked to B again")
    finally:
        await a.stop()
        await b.stop()


# --- errors over the control channel -----------------------------------------------------


async def _answering(tmp_path: Path, answer: web.Response) -> tuple[ControlClient, web.AppRunner]:
    async def reply(request: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reply)
    runner = web.AppRunner(app)
    await runner.setup()
    path = tmp_path / "c.sock"
    await web.UnixSite(runner, str(path)).start()
    rt = Runtime(pid=os.getpid(), token="t" * 32, control=f"unix:{path}", doc={})
    return ControlClient(rt, timeout=10), runner


@pytest.mark.parametrize(("kind", "raised"), [
    ("WrongPassphraseError", WrongPassphraseError),
    ("DaemonNotRunningError", DaemonNotRunningError),
    ("UserError", UserError),
    ("unexpected", DaemonFailedError),
    # names outside the table are never looked up elsewhere
    ("os.system", UserError), ("__import__('os').system('true')", UserError),
    ("KeyboardInterrupt", UserError), ("ComponentError", UserError), (None, UserError),
    (["UserError"], UserError),
])
async def test_the_error_kind_comes_back_as_its_class(tmp_path: Path, kind: object,
                                                      raised: type[Exception]) -> None:
    doc = {"error": "what went wrong"} if kind is None else {"error": "what went wrong",
                                                            "kind": kind}
    client, runner = await _answering(tmp_path, web.json_response(doc, status=400))
    try:
        with pytest.raises(raised) as info:
            await client.call("invite", who="x")
    finally:
        await runner.cleanup()
    assert type(info.value) is raised and str(info.value) == "what went wrong"


async def test_an_answer_that_is_not_the_protocol(tmp_path: Path) -> None:
    client, runner = await _answering(tmp_path, web.Response(status=500, text="<html>"))
    try:
        with pytest.raises(DaemonNotRunningError, match="does not answer"):
            await client.call("identities")
    finally:
        await runner.cleanup()
    client, runner = await _answering(tmp_path, web.json_response([1, 2]))
    try:
        with pytest.raises(DaemonFailedError):
            await client.call("identities")
    finally:
        await runner.cleanup()


def test_an_error_travels_as_its_nearest_listed_class() -> None:
    assert error_kind(AddressChecksumError("x")) == "BadAddressError"
    assert error_kind(WrongPassphraseError("x")) == "WrongPassphraseError"
    assert error_kind(ComponentError("x")) == "UserError"
