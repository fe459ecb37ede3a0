"""``paranoim run`` as a subprocess: each option, the ready lines, the runtime file, clean
stops on SIGTERM and SIGINT, and every start-up error with its message and exit code."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemonproc import Paranoim


def _port(line: str) -> int:
    return int(line.split()[0].rsplit(":", 1)[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_cleanly(pim: Paranoim, free_port: Callable[[], int],
                                      sig: int) -> None:
    xmpp, web, p2p = free_port(), free_port(), free_port()
    d = pim.start("run", "--xmpp-port", str(xmpp), "--web-port", str(web),
                  "--p2p-port", str(p2p), "--difficulty", "8")
    assert _port(d.line("XMPP")) == xmpp and "certificate SHA-256" in d.line("XMPP")
    assert _port(d.line("P2P")) == p2p and "difficulty 8 bits" in d.line("P2P")
    shown = d.line("Web UI")
    assert shown.startswith(f"http://127.0.0.1:{web}/ ") and "token" not in shown
    assert "paranoim open" in shown

    # the runtime file: private, with what other commands need
    rt = pim.runtime()
    assert stat.S_IMODE(pim.runtime_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pim.data_dir.stat().st_mode) == 0o700
    ports = rt["ports"]
    assert isinstance(ports, dict)
    upload = ports.get("upload")  # the file listener's: a free one, not chosen
    assert isinstance(upload, int) and upload > 0
    assert rt["pid"] == d.proc.pid and rt["ports"] == {"xmpp": xmpp, "web": web, "p2p": p2p,
                                                      "upload": upload}
    # the web UI's token is not in the file; `paranoim open --print` asks the daemon
    assert "access_token" not in rt and len(str(rt["control_token"])) >= 32
    res = pim.run("open", "--print")
    assert res.returncode == 0, res.stderr
    url = res.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{web}/?token=")
    assert url.rsplit("=", 1)[1] != rt["control_token"]
    # every listener really listens; the web UI is on loopback and takes the token
    for port in (xmpp, web, p2p):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with browser.open(url, timeout=10) as resp:
        assert resp.status == 200
    # a config file with commented defaults was written on first run
    assert "# [xmpp]" not in pim.config_file.read_text()
    assert "# port = 5222" in pim.config_file.read_text()

    assert d.stop(sig) == 0
    assert "Stopped." in d.stdout
    assert not pim.runtime_file.exists()
    assert not (pim.data_dir / "control.sock").exists()
    assert not any("Traceback" in line for line in d.stderr)


def test_fresh_token_each_start(pim: Paranoim, free_port: Callable[[], int]) -> None:
    tokens = []
    for _ in range(2):
        d = pim.start_daemon(free_port=free_port)
        tokens.append(str(pim.runtime()["control_token"]))
        tokens.append(pim.run("open", "--print").stdout.strip().rsplit("=", 1)[1])
        assert d.stop() == 0
    assert len(set(tokens)) == 4


def test_options_storage_peer_log_level(tmp_path: Path, free_port: Callable[[], int]) -> None:
    a, b = Paranoim(tmp_path / "a"), Paranoim(tmp_path / "b")
    try:
        da = a.start_daemon("--storage", "sqlite", free_port=free_port)
        a_p2p = a.runtime()["ports"]["p2p"]  # type: ignore[index]
        assert "storage sqlite" in da.line("P2P")
        assert (a.data_dir / "envelopes.db").exists()
        db = b.start_daemon("--peer", f"127.0.0.1:{a_p2p}", "--log-level", "debug",
                            free_port=free_port)
        assert any(" DEBUG " in line for line in db.stderr)
        # B dials A: `paranoim peers` on B lists the link (waits for the dialler)
        for _ in range(200):
            out = b.run("peers")
            assert out.returncode == 0, out.stderr
            if out.stdout.strip() and not out.stdout.startswith("No peers"):
                break
        assert "No peers" not in out.stdout
        status = b.run("status")
        assert status.returncode == 0 and re.search(r"[1-9]\d* peers", status.stdout)
        assert "difficulty 8 bits" in status.stdout
        assert da.stop() == 0 and db.stop() == 0
    finally:
        a.cleanup()
        b.cleanup()


def test_config_file_and_option(pim: Paranoim, free_port: Callable[[], int],
                                tmp_path: Path) -> None:
    xmpp, web = free_port(), free_port()
    conf = tmp_path / "custom.toml"
    conf.write_text(f'log_level = "warning"\n[xmpp]\nport = {xmpp}\n[web]\nport = {web}\n'
                    '[p2p]\nlisten = "127.0.0.1"\nport = 0\ndifficulty = 9\n')
    d = pim.start("--config", str(conf), "run")
    assert _port(d.line("XMPP")) == xmpp and "difficulty 9 bits" in d.line("P2P")
    assert d.line("Web UI").startswith(f"http://127.0.0.1:{web}/")
    assert not pim.config_file.exists()  # --config given: the default file is not written
    assert d.stop() == 0


def test_stale_runtime_file_is_ignored(pim: Paranoim, free_port: Callable[[], int]) -> None:
    pim.data_dir.mkdir(mode=0o700)
    gone = subprocess.Popen([sys.executable, "-c", ""])  # a pid nothing runs under now
    gone.wait()
    dead = gone.pid
    pim.runtime_file.write_text(json.dumps({"pid": dead, "control_token": "x" * 32,
                                            "control": "unix:/nonexistent"}))
    res = pim.run("status")
    assert res.returncode == 5 and "not running" in res.stderr
    d = pim.start_daemon(free_port=free_port)
    assert pim.runtime()["pid"] == d.proc.pid
    assert d.stop() == 0


# --- errors ---------------------------------------------------------------------------


def _one_error_line(res: object, code: int, *needles: str) -> None:
    assert res.returncode == code, (res.stdout, res.stderr)  # type: ignore[attr-defined]
    err = res.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert err and err[-1].startswith("paranoim: error: "), err
    assert "Traceback" not in res.stderr  # type: ignore[attr-defined]
    for n in needles:
        assert n in err[-1], err[-1]


@pytest.mark.parametrize("option", ["--xmpp-port", "--web-port", "--p2p-port"])
def test_port_in_use(pim: Paranoim, free_port: Callable[[], int], option: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = {"--xmpp-port": free_port(), "--web-port": free_port(),
                 "--p2p-port": free_port(), option: taken}
        pim.write_config('[p2p]\nlisten = "127.0.0.1"\n')
        res = pim.run("run", *[x for kv in ports.items() for x in (kv[0], str(kv[1]))])
    _one_error_line(res, 3, f"port {taken}", "already in use", option)
    assert not pim.runtime_file.exists()


def test_already_running(pim: Paranoim, free_port: Callable[[], int]) -> None:
    d = pim.start_daemon(free_port=free_port)
    res = pim.run("run", "--xmpp-port", str(free_port()), "--web-port", str(free_port()),
                  "--p2p-port", str(free_port()))
    _one_error_line(res, 6, "already runs", str(d.proc.pid))
    assert d.stop() == 0


@pytest.mark.parametrize(("text", "key"), [
    ("[xmpp]\nprot = 5222\n", "xmpp.prot"),
    ("colour = 'blue'\n", "colour"),
    ("[web]\nport = 'eighty'\n", "web.port"),
    ("[p2p]\nstorage = 'floppy'\n", "p2p.storage"),
    ("[p2p]\npeers = ['nohost']\n", "p2p.peers"),
    ("[p2p]\ndifficulty = 99\n", "p2p.difficulty"),
    ("[tor]\nenabled = 'yes'\n", "tor.enabled"),
])
def test_bad_config_key(pim: Paranoim, text: str, key: str) -> None:
    pim.write_config(text)
    res = pim.run("run")
    _one_error_line(res, 2, f"'{key}'")


def test_bad_options(pim: Paranoim) -> None:
    res = pim.run("run", "--difficulty", "0")
    _one_error_line(res, 2, "--difficulty")
    res = pim.run("run", "--peer", "no-port")
    _one_error_line(res, 2, "--peer", "host:port")
    res = pim.run("run", "--storage", "tape")  # argparse's own usage error
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = pim.run("--config", "/nonexistent/x.toml", "run")
    _one_error_line(res, 2, "/nonexistent/x.toml")
    broken = pim.root / "broken.toml"
    broken.write_text("[xmpp\n")
    _one_error_line(pim.run("--config", str(broken), "run"), 2, "not valid TOML")


def test_wrong_passphrase(pim: Paranoim, free_port: Callable[[], int]) -> None:
    res = pim.run("id", "new", "Alice")
    assert res.returncode == 0, res.stderr
    res = pim.run("passphrase", "set", env={"PARANOIM_NEW_PASSPHRASE": "correct horse"})
    assert res.returncode == 0, res.stderr
    # free ports, so that a daemon someone runs on the default ports changes nothing
    ports = ("--xmpp-port", str(free_port()), "--web-port", str(free_port()),
             "--p2p-port", str(free_port()))
    res = pim.run("run", *ports, env={"PARANOIM_PASSPHRASE": "wrong"})
    _one_error_line(res, 4, "wrong passphrase")
    res = pim.run("run", *ports)  # no terminal, no variable
    _one_error_line(res, 4, "PARANOIM_PASSPHRASE")
    d = pim.start_daemon(free_port=free_port, env={"PARANOIM_PASSPHRASE": "correct horse"})
    assert d.stop() == 0


def test_tor_unreachable(pim: Paranoim, free_port: Callable[[], int]) -> None:
    dead = free_port()
    pim.write_config(f'[p2p]\nlisten = "127.0.0.1"\n[tor]\ncontrol = "127.0.0.1:{dead}"\n')
    res = pim.run("run", "--tor", "--xmpp-port", str(free_port()), "--web-port",
                  str(free_port()), "--p2p-port", str(free_port()))
    _one_error_line(res, 1, "Tor's control port", str(dead))
    assert not pim.runtime_file.exists()


def test_tor_onion(pim: Paranoim, free_port: Callable[[], int], tor: object) -> None:
    pim.write_config(f'[tor]\ncontrol = "127.0.0.1:{tor.control_port}"\n')  # type: ignore[attr-defined]
    d = pim.start_daemon("--tor", free_port=free_port)
    onion = d.line("Onion")
    assert onion.split(":")[0].endswith(".onion") and len(onion.split(".")[0]) == 56
    assert "Tor on" in d.line("P2P") and d.line("P2P").startswith("127.0.0.1:")
    # the onion is in invitations, and is the same after a restart (its key is kept, 0600)
    assert pim.run("id", "new", "Olga").returncode == 0
    assert f"peer={onion}" in pim.run("invite", "--no-qr").stdout
    assert stat.S_IMODE((pim.data_dir / "onion.key").stat().st_mode) == 0o600
    assert d.stop() == 0
    d = pim.start_daemon("--tor", free_port=free_port)
    assert d.line("Onion").split(":")[0] == onion.split(":")[0]
    assert d.stop() == 0


def test_open_and_tray_without_desktop(pim: Paranoim, free_port: Callable[[], int]) -> None:
    seen = pim.root / "opened.txt"
    browser = pim.root / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    browser.chmod(0o755)
    d = pim.start_daemon("--open", "--tray", free_port=free_port,
                         env={"BROWSER": str(browser)})
    # no DISPLAY: no tray icon, said once, and the daemon runs the same
    assert any("no tray icon" in line for line in d.stdout)
    for _ in range(500):
        if seen.exists() and seen.read_text().strip():
            break
        time.sleep(0.02)
    opened = seen.read_text().strip()
    assert opened.startswith(d.line("Web UI").split()[0] + "?token=")
    assert opened == pim.run("open", "--print").stdout.strip()
    # `paranoim open` opens the same link in the browser
    seen.unlink()
    res = pim.run("open", env={"BROWSER": str(browser)})
    assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr
    assert seen.read_text().strip() == opened
    assert d.stop() == 0
    # and says clearly when no daemon runs
    res = pim.run("open")
    assert res.returncode == 5 and "not running" in res.stderr and "Traceback" not in res.stderr


def test_long_data_dir_uses_loopback_control(tmp_path: Path,
                                             free_port: Callable[[], int]) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    pim = Paranoim(tmp_path)
    pim.data_dir = deep
    pim.env["PARANOIM_DATA_DIR"] = str(deep)
    try:
        d = pim.start_daemon(free_port=free_port)
        assert str(pim.runtime()["control"]).startswith("tcp:127.0.0.1:")
        res = pim.run("id", "new", "Ivy")
        assert res.returncode == 0 and "not running" not in res.stderr, res.stderr
        # a wrong token is refused by the control channel
        rt = pim.runtime()
        port = int(str(rt["control"]).rsplit(":", 1)[1])
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/control/identities",
                                     headers={"Authorization": "Bearer wrong"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 403
        assert d.stop() == 0
    finally:
        pim.cleanup()


def test_ctrl_c_reaches_the_process_group(pim: Paranoim, free_port: Callable[[], int]) -> None:
    """Ctrl-C in a terminal signals the daemon and its worker processes together: the
    daemon stops cleanly and the workers print nothing."""
    d = pim.start_daemon(free_port=free_port, new_session=True)
    assert d.stop(signal.SIGINT, group=True) == 0
    time.sleep(0.2)  # let the stderr pump drain
    assert "Stopped." in d.stdout
    noise = [line for line in d.stderr if "Traceback" in line or "KeyboardInterrupt" in line]
    assert not noise, "\n".join(d.stderr)


def test_sqlite_keeps_envelopes_across_restarts(pim: Paranoim,
                                                free_port: Callable[[], int]) -> None:
    def stored() -> int:
        res = pim.run("status")
        assert res.returncode == 0, res.stderr
        return int(re.search(r"(\d+) envelopes stored", res.stdout)[1])  # type: ignore[index]

    d = pim.start_daemon("--storage", "sqlite", free_port=free_port)
    assert pim.run("id", "new", "Kim").returncode == 0  # publishes Kim's announcement
    for _ in range(300):
        if stored() >= 1:
            break
        time.sleep(0.05)
    before = stored()
    assert before >= 1
    assert d.stop() == 0
    d = pim.start_daemon("--storage", "sqlite", free_port=free_port)
    assert stored() >= before
    assert d.stop() == 0
    # and in RAM mode nothing survives
    d = pim.start_daemon(free_port=free_port)
    assert stored() <= 2  # at most the announcements made at this start (versions 1 and 2)
    assert d.stop() == 0


def _start_xvfb(timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb on a display it picks itself (``-displayfd``: no two runs side by side
    can share one), once it accepts connections; (process, ":N")."""
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0",
                             "640x480x24"], pass_fds=(write_end,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        ready, _, _ = select.select([pipe], [], [], timeout)
        number = pipe.readline().strip() if ready else ""
    if not number.isdigit():
        xvfb.kill()
        xvfb.wait()
        raise AssertionError(f"Xvfb named no display within {timeout} s")
    return xvfb, f":{number}"  # it writes the number once it is ready for clients


# Once, on the main Python: with two of these at once (the other Pythons run side by side)
# under full load, the icon's first connection to its Xvfb was seen reset.
@pytest.mark.slow
def test_tray_on_a_desktop_without_tray(pim: Paranoim, free_port: Callable[[], int],
                                        tmp_path: Path) -> None:
    """With pystray and an X display (Xvfb) the daemon runs and stops the same, silently,
    even when no system tray takes the icon."""
    import importlib.util
    import shutil

    from tests.util import skip_or_fail

    if importlib.util.find_spec("pystray") is None:  # importing it needs a display
        skip_or_fail("pystray is not installed (pip install -e '.[test]')")
    if shutil.which("Xvfb") is None:
        skip_or_fail("Xvfb is not installed (apt-get install xvfb)")
    xvfb, display = _start_xvfb()
    try:
        d = pim.start_daemon("--tray", free_port=free_port, env={"DISPLAY": display})
        assert not any("no tray icon" in line for line in d.stdout)
        assert d.stop() == 0
        assert not [line for line in d.stderr if "Traceback" in line]
    finally:
        xvfb.terminate()
        xvfb.wait()
