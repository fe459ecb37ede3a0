"""XMPP end-to-end benchmark, one run: ``.venv/bin/python -m tests.bench.bench_xmpp``.

The same load over two paths, printed as one table with the ratios:

1. ParanoIM: slixmpp client → embedded listener of daemon A → sealed, PoW-stamped
   envelope → P2P link over loopback → daemon B → its listener → slixmpp client.
   Two real ``paranoim run`` processes at ``--difficulty 1`` (the minimum).
2. Baseline: the same two slixmpp clients as two users of a local Prosody c2s.

Load: ``--messages`` chat messages from Alice to Bob with at most ``--concurrency``
in flight (a new one leaves when one arrives); a few warm-up messages first. Latency
is send → arrival, both measured in this process; stanzas/s is messages over the
time from the first send to the last arrival. The CPU time each side spent per
message during the load is shown too (from /proc: the server processes with their
children, and this process, which runs both clients): it says whether a path is
bound by work or by waiting. With ``--rounds N`` the two paths are measured N times,
alternately, and the table shows each path's median round by stanzas/s: on a shared
machine one round can catch another program's burst.

Then a file (``--file-mib``, 10 MiB: a PNG of random pixels) from Alice's client to
Bob's client, as a client sends a picture: an XEP-0363 slot and PUT into daemon A,
the GET URL in a chat message, the file across in chunk records, Bob's client told
his own daemon's URL, and its GET. Twice, on two new daemon pairs: with daemon B
announcing a direct endpoint (``--advertise``), and with none (every chunk by gossip
over the P2P link). The baseline in the same run is the same bytes through one
plain aiohttp PUT and GET on loopback. ``--files-only`` skips the chat messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slixmpp import JID

from tests.integration.test_e2e_files import png
from tests.interop.drivers import Prosody, SlixClient
from tests.interop.test_clients import Daemon
from tests.util import free_tcp_port

WARMUP = 5


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children (worker processes), from /proc."""
    total = 0.0
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass(frozen=True, slots=True)
class Result:
    path: str
    messages: int
    concurrency: int
    seconds: float
    latencies: list[float]
    server_cpu: float = 0.0  # seconds of CPU of the server processes during the load
    client_cpu: float = 0.0  # seconds of CPU of this process (both clients) during it
    envelopes: int = 0  # envelopes daemon A's store held afterwards (ParanoIM)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run_load(path: str, sender: SlixClient, receiver: SlixClient, to: str,
                   messages: int, concurrency: int, servers: tuple[int, ...] = ()) -> Result:
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    slots = asyncio.Semaphore(concurrency)
    done = asyncio.Event()
    expected: set[str] = set()

    def on_message(msg: Any) -> None:
        body = str(msg["body"])
        if body in sent and body not in arrived:
            arrived[body] = time.perf_counter()
            slots.release()
            if expected and expected <= arrived.keys():
                done.set()

    receiver.add_event_handler("message", on_message)
    try:
        async def send(tags: list[str]) -> None:
            for tag in tags:
                await slots.acquire()
                sent[tag] = time.perf_counter()
                sender.send_message(mto=JID(to), mbody=tag, mtype="chat")

        warm = [f"warm-{path}-{n}" for n in range(WARMUP)]
        expected.update(warm)
        await send(warm)
        await asyncio.wait_for(done.wait(), 60)
        done.clear()
        tags = [f"load-{path}-{n}" for n in range(messages)]
        expected.clear()
        expected.update(tags)
        server0 = sum(cpu_seconds(p) for p in servers)
        client0 = time.process_time()
        start = time.perf_counter()
        await send(tags)
        await asyncio.wait_for(done.wait(), 300)
        seconds = max(arrived[t] for t in tags) - start
        client_cpu = time.process_time() - client0
        server_cpu = sum(cpu_seconds(p) for p in servers) - server0
    finally:
        receiver.del_event_handler("message", on_message)
    return Result(path, messages, concurrency, seconds, [arrived[t] - sent[t] for t in tags],
                  server_cpu, client_cpu)


async def paranoim_path(root: Path, messages: int, concurrency: int) -> Result:
    a, b = Daemon(root / "a"), Daemon(root / "b")
    alice_acc, bob_acc = a.new_identity("Alice"), b.new_identity("Bob")
    a.run()
    b.run("--peer", f"127.0.0.1:{a.port('p2p')}")
    alice = SlixClient(f"{alice_acc.jid}/bench", alice_acc.password, port=a.port("xmpp"),
                       ca_cert=a.cert)
    bob = SlixClient(f"{bob_acc.jid}/bench", bob_acc.password, port=b.port("xmpp"),
                     ca_cert=b.cert)
    try:
        await alice.start()
        await bob.start()
        # each adds the other (a subscription), so nothing waits as a contact request
        alice.send_presence(pto=JID(bob_acc.contact_jid), ptype="subscribe")
        bob.send_presence(pto=JID(alice_acc.contact_jid), ptype="subscribe")
        bob.send_chat("paranoim@localhost", "status")
        await bob.wait_for_message("peers connected: 1", sender="paranoim@localhost",
                                   timeout=30)
        assert a.proc is not None and b.proc is not None
        result = await run_load("paranoim", alice, bob, bob_acc.contact_jid, messages,
                                concurrency, (a.proc.pid, b.proc.pid))
        alice.received.clear()
        alice.send_chat("paranoim@localhost", "status")
        status = await alice.wait_for_message("stored envelopes", sender="paranoim@localhost")
        found = re.search(r"stored envelopes: (\d+)", status.body)
        return replace(result, envelopes=int(found.group(1)) if found else 0)
    finally:
        await alice.stop()
        await bob.stop()
        b.stop()
        a.stop()


async def prosody_path(messages: int, concurrency: int) -> Result:
    server = Prosody().start()
    try:
        alice_jid = server.register("alice", "alice-pw")
        bob_jid = server.register("bob", "bob-pw")
        alice = SlixClient(f"{alice_jid}/bench", "alice-pw", port=server.c2s_port,
                           ca_cert=server.cert.cert)
        bob = SlixClient(f"{bob_jid}/bench", "bob-pw", port=server.c2s_port,
                         ca_cert=server.cert.cert)
        await alice.start()
        await bob.start()
        try:
            assert server.proc is not None
            return await run_load("prosody", alice, bob, bob_jid, messages, concurrency,
                                  (server.proc.pid,))
        finally:
            await alice.stop()
            await bob.stop()
    finally:
        server.cleanup()


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    size: int
    upload: float  # seconds: slot and PUT into daemon A
    across: float  # the chat message sent to Bob's client told of the file
    download: float  # Bob's GET from daemon B
    direct: str = ""  # what the daemons counted: chunks sent or received directly

    @property
    def total(self) -> float:
        return self.upload + self.across + self.download

    @property
    def rate(self) -> float:
        return self.size / 2**20 / self.total


async def upload_and_send(alice: SlixClient, to: str, name: str, data: bytes,
                          ssl_ctx: ssl.SSLContext) -> tuple[float, float]:
    """XEP-0363 as a client does it, then the URL to ``to``: (upload s, time sent)."""
    start = time.perf_counter()
    service = await alice.plugin["xep_0363"].find_upload_service(timeout=10)
    slot = (await alice.plugin["xep_0363"].request_slot(
        service["from"], name, len(data), "image/png", timeout=10))["http_upload_slot"]
    async with aiohttp.ClientSession() as http, http.put(
            slot["put"]["url"], data=data, ssl=ssl_ctx,
            headers={"Content-Type": "image/png"}) as resp:
        assert resp.status == 201, resp.status
    uploaded = time.perf_counter()
    alice.send_chat(to, str(slot["get"]["url"]))
    return uploaded - start, time.perf_counter()


def direct_counts(daemon: Daemon) -> str:
    """The daemon's "Direct:" line of ``paranoim status``, cut to its counts."""
    out = subprocess.run(daemon._argv("status"), env=daemon.env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    found = re.search(r"(\d+) sent directly.*?(\d+) received directly", out)
    return f"{found[1]} sent, {found[2]} received" if found else "?"


async def file_path(root: Path, size_mib: int, direct: bool) -> FileResult:
    a, b = Daemon(root / "a"), Daemon(root / "b")
    alice_acc, bob_acc = a.new_identity("Alice"), b.new_identity("Bob")
    a.run()
    port = free_tcp_port()
    b.run("--peer", f"127.0.0.1:{a.port('p2p')}",
          *(("--p2p-port", str(port), "--advertise", f"127.0.0.1:{port}") if direct else ()))
    alice = SlixClient(f"{alice_acc.jid}/bench", alice_acc.password, port=a.port("xmpp"),
                       ca_cert=a.cert)
    bob = SlixClient(f"{bob_acc.jid}/bench", bob_acc.password, port=b.port("xmpp"),
                     ca_cert=b.cert)
    alice.register_plugin("xep_0363")
    try:
        await alice.start()
        await bob.start()
        alice.send_presence(pto=JID(bob_acc.contact_jid), ptype="subscribe")
        bob.send_presence(pto=JID(alice_acc.contact_jid), ptype="subscribe")
        bob.send_chat("paranoim@localhost", "status")
        await bob.wait_for_message("peers connected: 1", sender="paranoim@localhost",
                                   timeout=30)
        if direct:  # Alice's daemon has opened Bob's announcement, with his endpoint
            deadline = time.monotonic() + 60
            while "1 contacts with an endpoint" not in subprocess.run(
                    a._argv("status"), env=a.env, capture_output=True, text=True,
                    timeout=60).stdout:
                assert time.monotonic() < deadline, "Bob's endpoint never reached daemon A"
                await asyncio.sleep(0.2)
        # A chat message both ways first: the sessions are up before the clock starts.
        alice.send_chat(bob_acc.contact_jid, "ready?")
        await bob.wait_for_message("ready?", timeout=60)
        side = int((size_mib * 2**20 / 3) ** 0.5)  # random pixels: 3 bytes each
        data = png(side, side)
        up, sent = await upload_and_send(alice, bob_acc.contact_jid, "big.png", data,
                                         ssl.create_default_context(cafile=a.cert))
        got = await bob.wait_for_message("/file/", sender=alice_acc.contact_jid, timeout=1800)
        across = time.perf_counter() - sent
        start = time.perf_counter()
        async with aiohttp.ClientSession() as http, http.get(
                got.body, ssl=ssl.create_default_context(cafile=b.cert)) as resp:
            assert await resp.read() == data
        download = time.perf_counter() - start
        return FileResult("direct" if direct else "gossip", len(data), up, across, download,
                          f"A {direct_counts(a)}; B {direct_counts(b)}")
    finally:
        await alice.stop()
        await bob.stop()
        b.stop()
        a.stop()


async def http_baseline(size: int) -> FileResult:
    """The same bytes through one aiohttp PUT and GET on loopback."""
    kept: dict[str, bytes] = {}

    async def put(request: web.Request) -> web.Response:
        kept["f"] = await request.read()
        return web.Response(status=201)

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=kept["f"])

    app = web.Application(client_max_size=size + 1024)
    app.router.add_put("/f", put)
    app.router.add_get("/f", get)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    data = os.urandom(size)
    try:
        async with aiohttp.ClientSession() as http:
            start = time.perf_counter()
            async with http.put(f"http://127.0.0.1:{port}/f", data=data) as resp:
                assert resp.status == 201
            up = time.perf_counter() - start
            start = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{port}/f") as resp:
                assert await resp.read() == data
            return FileResult("aiohttp", size, up, 0.0, time.perf_counter() - start)
    finally:
        await runner.cleanup()


def file_table(rows: list[FileResult]) -> str:
    names = {"direct": "ParanoIM, direct delivery (B announces an endpoint)",
             "gossip": "ParanoIM, gossip only (no endpoint)",
             "aiohttp": "baseline: one aiohttp PUT + GET on loopback"}
    out = ["| path | MiB | upload s | across s | download s | total s | MiB/s | "
           "direct-delivery counts |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {names[r.path]} | {r.size / 2**20:.1f} | {r.upload:.2f} | "
                   f"{r.across:.2f} | {r.download:.2f} | {r.total:.2f} | {r.rate:.2f} | "
                   f"{r.direct} |")
    return "\n".join(out)


def median_round(results: list[Result]) -> Result:
    """The round with the median stanzas/s (the lower one of an even count)."""
    return sorted(results, key=lambda r: r.rate)[(len(results) - 1) // 2]


def table(ours: Result, base: Result) -> str:
    rows = [
        "| path | messages | in flight | stanzas/s | p50 ms | p99 ms | server CPU µs/msg "
        "| clients CPU µs/msg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, name in ((ours, "ParanoIM: client → gateway → P2P (2 daemons) → gateway → client"),
                    (base, "Prosody c2s: client → server → client")):
        rows.append(f"| {name} | {r.messages} | {r.concurrency} | {r.rate:,.1f} | "
                    f"{r.pct(0.50):.1f} | {r.pct(0.99):.1f} | "
                    f"{r.server_cpu / r.messages * 1e6:.0f} | "
                    f"{r.client_cpu / r.messages * 1e6:.0f} |")
    cpu_ratio = (ours.server_cpu / base.server_cpu) if base.server_cpu else float("nan")
    rows.append(f"| ratio ParanoIM / Prosody | | | {ours.rate / base.rate:.3f} | "
                f"{ours.pct(0.50) / base.pct(0.50):.1f} | {ours.pct(0.99) / base.pct(0.99):.1f} "
                f"| {cpu_ratio:.1f} | |")
    return "\n".join(rows)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both paths N times, alternately; show the median")
    parser.add_argument("--file-mib", type=int, default=10, help="the file's size, MiB")
    parser.add_argument("--files-only", action="store_true", help="skip the chat messages")
    parser.add_argument("--messages-only", action="store_true", help="skip the file")
    args = parser.parse_args(argv)
    if not args.files_only:
        await messages(args)
    if args.messages_only:
        return
    rows = []
    for direct in (True, False):
        root = Path(tempfile.mkdtemp(prefix="paranoim-bench-file-"))
        try:
            rows.append(await file_path(root, args.file_mib, direct))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    rows.append(await http_baseline(rows[0].size))
    print(f"\n## A {rows[0].size / 2**20:.1f} MiB picture, client to client on loopback "
          f"(PoW difficulty 1; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})\n")
    print(file_table(rows))


async def messages(args: argparse.Namespace) -> None:
    mine: list[Result] = []
    theirs: list[Result] = []
    for n in range(args.rounds):
        root = Path(tempfile.mkdtemp(prefix="paranoim-bench-xmpp-"))
        try:
            mine.append(await paranoim_path(root, args.messages, args.concurrency))
            theirs.append(await prosody_path(args.messages, args.concurrency))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if args.rounds > 1:
            print(f"round {n + 1}: ParanoIM {mine[-1].rate:,.0f}/s p50 "
                  f"{mine[-1].pct(0.5):.1f} ms, Prosody {theirs[-1].rate:,.0f}/s p50 "
                  f"{theirs[-1].pct(0.5):.1f} ms")
    ours, base = median_round(mine), median_round(theirs)
    print(f"\n## XMPP end to end on loopback ({args.messages} chat messages, "
          f"{args.concurrency} in flight, PoW difficulty 1; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}"
          f"{f'; median of {args.rounds} rounds' if args.rounds > 1 else ''})\n")
    print(table(ours, base))
    print(f"\nmean latency: ParanoIM {statistics.mean(ours.latencies) * 1000:.1f} ms, "
          f"Prosody {statistics.mean(base.latencies) * 1000:.1f} ms")
    if ours.envelopes:
        print(f"ParanoIM envelopes in A's store after the round: {ours.envelopes:,} (for "
              f"{ours.messages + WARMUP:,} messages and the daemons' own: "
              f"{(ours.messages + WARMUP) / ours.envelopes:.1f} messages per envelope)")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
