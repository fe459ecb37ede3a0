"""``paranoim service install|uninstall|status`` with a temporary HOME and XDG dirs:
the files written, and what is said when systemctl/launchctl are not there."""

from __future__ import annotations

import configparser
import plistlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonproc import EXE, Paranoim


@pytest.fixture
def pim(tmp_path: Path) -> Iterator[Paranoim]:
    p = Paranoim(tmp_path)
    # no service manager on PATH: the commands must say what to run instead
    (tmp_path / "bin").mkdir()
    p.env["PATH"] = str(tmp_path / "bin")
    yield p


def _ok(res: object) -> str:
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]
    return str(res.stdout)  # type: ignore[attr-defined]


def test_systemd_unit(pim: Paranoim) -> None:
    out = _ok(pim.run("service", "install", "--kind", "systemd"))
    unit = Path(pim.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "paranoim.service"
    assert f"wrote {unit}" in out
    assert "run it yourself" in out and "systemctl --user enable --now paranoim.service" in out
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(unit.read_text())
    exec_start = parser["Service"]["ExecStart"]
    assert exec_start.startswith(str(EXE.resolve())) and " run" in exec_start
    # PARANOIM_DATA_DIR was set: the unit runs on the same data
    assert f"--data-dir {pim.data_dir}" in exec_start
    assert parser["Service"]["Restart"] == "on-failure"
    assert parser["Install"]["WantedBy"] == "default.target"
    assert "installed" in _ok(pim.run("service", "status", "--kind", "systemd"))
    out = _ok(pim.run("service", "uninstall", "--kind", "systemd"))
    assert f"removed {unit}" in out and not unit.exists()
    assert "not installed" in _ok(pim.run("service", "status", "--kind", "systemd"))


def test_autostart_entry(pim: Paranoim) -> None:
    _ok(pim.run("service", "install", "--kind", "autostart"))
    entry = Path(pim.env["XDG_CONFIG_HOME"]) / "autostart" / "paranoim.desktop"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(entry.read_text())
    d = parser["Desktop Entry"]
    assert d["Type"] == "Application" and d["Exec"].split()[1] == "run"
    assert d["Terminal"] == "false"
    _ok(pim.run("service", "uninstall", "--kind", "autostart"))
    assert not entry.exists()


def test_launchd_agent(pim: Paranoim) -> None:
    out = _ok(pim.run("service", "install", "--kind", "launchd"))
    plist = Path(pim.env["HOME"]) / "Library" / "LaunchAgents" / "org.paranoim.daemon.plist"
    doc = plistlib.loads(plist.read_bytes())
    assert doc["Label"] == "org.paranoim.daemon" and doc["RunAtLoad"] is True
    assert doc["ProgramArguments"][1] == "run"
    assert doc["KeepAlive"] == {"SuccessfulExit": False}
    assert "launchctl load -w" in out
    _ok(pim.run("service", "uninstall", "--kind", "launchd"))
    assert not plist.exists()


def test_uninstall_when_absent(pim: Paranoim) -> None:
    assert "nothing to remove" in _ok(pim.run("service", "uninstall", "--kind", "systemd"))
