"""Start the daemon at login: a systemd user unit or an XDG autostart entry on
Linux, a launchd agent on macOS.

Writing the file is all this module must do; when ``systemctl``/``launchctl``
is there it is called too, and when it is not, the command to run is printed.
Paths follow XDG_CONFIG_HOME (default ~/.config) and HOME, so tests can point
them at temporary directories.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bridge.core.errors import UserError

UNIT_NAME = "paranoim.service"
DESKTOP_NAME = "paranoim.desktop"
LAUNCHD_LABEL = "org.paranoim.daemon"
KINDS = ("systemd", "autostart", "launchd")


@dataclass(frozen=True, slots=True)
class Outcome:
    path: Path
    lines: list[str]  # what was done, or what the person should run


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _xdg_config() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")


def default_kind() -> str:
    if sys.platform == "darwin":
        return "launchd"
    return "systemd" if shutil.which("systemctl") else "autostart"


def command_line(data_dir: Path | None) -> list[str]:
    """The daemon's command: this very installation, so a venv install keeps working."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "paranoim" and argv0.exists():
        cmd = [str(argv0.resolve()), "run"]
    else:
        cmd = [sys.executable, "-m", "bridge", "run"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return cmd


def _quote(arg: str) -> str:
    if arg and not any(c in arg for c in ' "\'\\\t%$'):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_unit(cmd: list[str]) -> str:
    return f"""\
# ParanoIM user service. Installed by `paranoim service install`.
# With an encrypted key file, put PARANOIM_PASSPHRASE=... into
# ~/.config/paranoim/env (mode 0600): a service cannot prompt.
[Unit]
Description=ParanoIM: Jabber over an anonymous, encrypted P2P network

[Service]
Type=simple
ExecStart={" ".join(_quote(a) for a in cmd)}
EnvironmentFile=-%h/.config/paranoim/env
Restart=on-failure
# configuration, passphrase and "already running" errors do not heal by retrying
RestartPreventExitStatus=2 4 6
RestartSec=5
# SIGTERM is a clean stop: listeners close, the store is flushed.
KillSignal=SIGTERM
TimeoutStopSec=30
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=default.target
"""


def desktop_entry(cmd: list[str]) -> str:
    return f"""\
[Desktop Entry]
Type=Application
Name=ParanoIM
GenericName=Anonymous P2P Jabber bridge
Comment=Use your Jabber client over an anonymous, encrypted P2P network
Exec={" ".join(_quote(a) for a in cmd)}
Icon=paranoim
Terminal=false
Categories=Network;InstantMessaging;
X-GNOME-Autostart-enabled=true
"""


def launchd_plist(cmd: list[str]) -> bytes:
    logs = _home() / "Library" / "Logs" / "paranoim.log"
    return plistlib.dumps({
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": cmd,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart on failure only
        "ProcessType": "Background",
        "StandardOutPath": str(logs),
        "StandardErrorPath": str(logs),
    })


def target(kind: str) -> Path:
    if kind == "systemd":
        return _xdg_config() / "systemd" / "user" / UNIT_NAME
    if kind == "autostart":
        return _xdg_config() / "autostart" / DESKTOP_NAME
    if kind == "launchd":
        return _home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    raise UserError(f"unknown service kind '{kind}'; use one of {', '.join(KINDS)}")


def _run(cmd: list[str]) -> tuple[bool, str]:
    """Run a service manager command if it exists; (ok, output)."""
    if shutil.which(cmd[0]) is None:
        return False, f"{cmd[0]} not found"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def _manager_steps(kind: str, path: Path, action: str) -> list[list[str]]:
    if kind == "systemd":
        if action == "install":
            return [["systemctl", "--user", "daemon-reload"],
                    ["systemctl", "--user", "enable", "--now", UNIT_NAME]]
        return [["systemctl", "--user", "disable", "--now", UNIT_NAME],
                ["systemctl", "--user", "daemon-reload"]]
    if kind == "launchd":
        if action == "install":
            return [["launchctl", "load", "-w", str(path)]]
        return [["launchctl", "unload", "-w", str(path)]]
    return []


def _apply(kind: str, path: Path, action: str) -> list[str]:
    lines: list[str] = []
    for step in _manager_steps(kind, path, action):
        ok, output = _run(step)
        if ok:
            lines.append(f"ran: {' '.join(step)}")
        else:
            why = output.splitlines()[-1] if output else "failed"
            lines.append(f"could not run `{' '.join(step)}` ({why}); run it yourself")
    return lines


def install(kind: str, data_dir: Path | None) -> Outcome:
    path = target(kind)
    cmd = command_line(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "launchd":
        path.write_bytes(launchd_plist(cmd))
    else:
        path.write_text(systemd_unit(cmd) if kind == "systemd" else desktop_entry(cmd),
                        encoding="utf-8")
    lines = [f"wrote {path}"]
    if kind == "autostart":
        lines.append("ParanoIM will start when you next log in to your desktop")
    lines += _apply(kind, path, "install")
    return Outcome(path, lines)


def uninstall(kind: str) -> Outcome:
    path = target(kind)
    if not path.exists():
        return Outcome(path, [f"nothing to remove: {path} does not exist"])
    lines = _apply(kind, path, "uninstall")
    path.unlink()
    lines.append(f"removed {path}")
    return Outcome(path, lines)


def status(kind: str) -> Outcome:
    path = target(kind)
    if not path.exists():
        return Outcome(path, [f"not installed ({path} does not exist)"])
    lines = [f"installed: {path}"]
    if kind == "systemd":
        ok, output = _run(["systemctl", "--user", "is-active", UNIT_NAME])
        lines.append(f"systemd says: {output or ('active' if ok else 'unknown')}")
    elif kind == "launchd":
        ok, output = _run(["launchctl", "list", LAUNCHD_LABEL])
        lines.append("launchd: loaded" if ok else "launchd: not loaded")
    return Outcome(path, lines)
