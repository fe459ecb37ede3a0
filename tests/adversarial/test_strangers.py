"""Strangers cost nothing durable: 1,500 fresh identities write first to one user of a
real daemon over its real P2P port. The victim's key file does not change, its contact
requests stay within their RAM budget, it keeps answering, its memory stays bounded, and
a real contact's message still arrives during the flood."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.e2e_support import Client, Daemon, in_parallel, logged_in

STRANGERS = 1500
RSS_BUDGET_MB = 400


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def _contacts(raw: bytes) -> list[tuple[str, list[str]]]:
    """Each identity of a key file (no passphrase: JSON after its magic line) and the
    addresses of its contacts."""
    magic, _, body = raw.partition(b"\n")
    assert magic == b"PIMK0", "the victim's key file has a passphrase; this test needs none"
    doc = json.loads(body)
    return [(i["nick"], sorted(c["address"] for c in i["contacts"])) for i in doc["identities"]]


def _stored(d: Daemon) -> int:
    found = re.search(r"(\d+) envelopes stored", d.cli("status"))
    assert found, "paranoim status shows no envelope count"
    return int(found[1])


async def test_a_flood_of_strangers_costs_nothing_durable(tmp_path: Path) -> None:
    v, h = Daemon(tmp_path / "victim", "V"), Daemon(tmp_path / "honest", "H")
    in_parallel(lambda: v.new_identity("Vic"), lambda: h.new_identity("Hon"))
    vic, hon = v.accounts["Vic"], h.accounts["Hon"]
    in_parallel(lambda: v.add_contact("Vic", hon), lambda: h.add_contact("Hon", vic))
    in_parallel(lambda: v.start(), lambda: h.start("--peer", v.p2p))
    victim_client = Client(vic, v)
    honest_client = Client(hon, h)
    attacker = None
    try:
        async with logged_in(victim_client, honest_client):
            honest_client.chat(vic.contact_jid, "before the flood")
            await victim_client.wait_body(hon.contact_jid, "before the flood", 60)
            keys = (v.data_dir / "keys.pim").read_bytes()
            assert v.proc is not None
            cpu0, rss0, stored0 = _cpu_s(v.proc.pid), _rss_mb(v.proc.pid), _stored(v)

            attacker = subprocess.Popen(
                [sys.executable, "-m", "tests.adversarial.stranger_flood", vic.address, v.p2p,
                 str(STRANGERS), "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert attacker.stdout is not None
            assert attacker.stdout.readline().strip() == "published"
            honest_client.chat(vic.contact_jid, "during the flood")
            await victim_client.wait_body(hon.contact_jid, "during the flood", 60)
            deadline = time.monotonic() + 120
            while _stored(v) < stored0 + STRANGERS:  # every stranger's envelope has arrived
                assert time.monotonic() < deadline, "the flood never fully arrived"
            peak = _rss_mb(v.proc.pid)
            cpu = _cpu_s(v.proc.pid) - cpu0
            assert attacker.stdin is not None
            attacker.stdin.close()
            cost = json.loads(attacker.stdout.readline())
            attacker.wait(30)

            # nothing a stranger sent is on disk; the user still runs every command. The
            # key file keeps what the real contact's messages changed (it was heard from,
            # the record of envelopes shown): no stranger is in it and it did not grow
            raw_after = (v.data_dir / "keys.pim").read_bytes()
            assert _contacts(raw_after) == _contacts(keys)
            assert len(raw_after) < len(keys) + 4096, f"{len(keys)} -> {len(raw_after)} bytes"
            rows = v.contact_list("Vic")
            pending = [r for r in rows if r[1] == "pending_in"]
            assert 0 < len(pending) <= 64, len(pending)
            assert any(r[2] == hon.contact_jid and r[1] == "accepted" for r in rows)
            assert "Vic" in v.cli("id", "list")
            assert peak < RSS_BUDGET_MB, f"victim RSS {peak:.0f} MB (was {rss0:.0f} MB)"
            print(f"\nstranger flood: attacker {cost['sent']} envelopes, {cost['cpu_s']:.1f} s "
                  f"CPU; victim {cpu:.1f} s CPU, RSS {rss0:.0f} -> {peak:.0f} MB, "
                  f"{len(pending)} requests held, no stranger in the key file")
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
        in_parallel(v.stop, h.stop)
