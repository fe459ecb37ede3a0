"""TorController against a real tor started offline (DisableNetwork 1, SocksPort 0,
ControlPort auto, cookie authentication, its own 0700 DataDirectory): ADD_ONION answers
without a network, onions vanish with the controller, each way of failing is explained."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.net.kkv import KkvInbox, KkvServer
from bridge.net.tor import TorController, TorError
from tests.interop.drivers import ProgramMissing, Tor
from tests.util import free_tcp_port, skip_or_fail

pytestmark = pytest.mark.interop

PASSWORD = "correct horse battery staple"


def _tor(**kw: object) -> Tor:
    try:
        return Tor(**kw)  # type: ignore[arg-type]
    except ProgramMissing as exc:
        skip_or_fail(str(exc))


@pytest.fixture
def tor_with_password() -> Iterator[Tor]:
    probe = _tor()
    hashed = (
        subprocess.run(
            [probe.binary, "--quiet", "--hash-password", PASSWORD],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    probe.cleanup()
    with _tor(extra={"HashedControlPassword": hashed}) as proc:
        yield proc


def _onion_ids(lines: list[str]) -> set[str]:
    return set(re.findall(r"[a-z2-7]{56}", " ".join(lines)))


async def test_tor_setup_is_offline_and_private(tor: Tor):
    assert tor.disable_network and tor.socks_port is None
    assert os.stat(tor.data_dir).st_mode & 0o777 == 0o700


async def test_add_onion_offline_and_remove(tor: Tor):
    async with await TorController.connect(port=tor.control_port) as ctl:
        assert ctl.auth_method == "SAFECOOKIE"  # the cookie's owner proves itself first
        assert ctl.version
        onion = await ctl.add_onion(free_tcp_port())
        assert re.fullmatch(r"[a-z2-7]{56}", onion.service_id)
        assert onion.url == f"http://{onion.service_id}.onion:45069"
        assert onion.private_key is None  # discarded: a new address each start
        assert onion.service_id in _onion_ids(await ctl.command("GETINFO onions/current"))
        await ctl.remove_onion(onion.service_id)
        assert onion.service_id not in _onion_ids(await ctl.command("GETINFO onions/current"))


async def test_onion_lives_exactly_as_long_as_its_controller(tor: Tor):
    first = await TorController.connect(port=tor.control_port)
    onion = await first.add_onion(free_tcp_port(), keep_key=True)
    assert onion.private_key and onion.private_key.startswith("ED25519-V3:")
    second = await TorController.connect(port=tor.control_port)
    try:
        with pytest.raises(TorError, match="refused ADD_ONION"):  # still held by the first
            await second.add_onion(free_tcp_port(), key=onion.private_key)
        await first.close()
        again = await second.add_onion(free_tcp_port(), key=onion.private_key)
        assert again.service_id == onion.service_id  # the same key gives the same address
    finally:
        await second.close()


async def test_onion_for_a_kkv_listener_marks_its_port(tor: Tor):
    server = KkvServer(KkvInbox())
    port = free_tcp_port()
    async with await TorController.connect(port=tor.control_port) as ctl:
        onion = await ctl.add_onion(port, virtual_port=45069)
        server.mark_onion_port(onion.target_port)
    assert port in server.onion_ports


async def test_explicit_cookie_path(tor: Tor):
    async with await TorController.connect(
        port=tor.control_port, cookie_path=tor.cookie_path
    ) as ctl:
        assert ctl.auth_method == "SAFECOOKIE"


async def test_wrong_cookie_is_detected_before_it_is_sent(tor: Tor, tmp_path: Path):
    fake = tmp_path / "cookie"
    fake.write_bytes(os.urandom(32))
    with pytest.raises(TorError, match="does not know Tor's cookie"):
        await TorController.connect(port=tor.control_port, cookie_path=fake)


async def test_unreadable_cookie(tor: Tor, tmp_path: Path):
    with pytest.raises(TorError, match="cannot read Tor's control cookie"):
        await TorController.connect(port=tor.control_port, cookie_path=tmp_path / "missing")


async def test_password_authentication(tor_with_password: Tor):
    port = tor_with_password.control_port
    async with await TorController.connect(port=port, password=PASSWORD) as ctl:
        assert ctl.auth_method == "HASHEDPASSWORD"
        assert re.fullmatch(r"[a-z2-7]{56}", (await ctl.add_onion(free_tcp_port())).service_id)
    with pytest.raises(TorError, match="refused AUTHENTICATE"):
        await TorController.connect(port=port, password="wrong")


async def test_control_port_not_listening():
    with pytest.raises(TorError, match="cannot reach Tor's control port"):
        await TorController.connect(port=free_tcp_port(), timeout=2)
