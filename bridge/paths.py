"""Where ParanoIM keeps its files.

The config file lives in the platform's config directory, the data (keys, the
listener certificate, the SQLite store, the runtime file) in its data directory.
``--data-dir`` beats ``PARANOIM_DATA_DIR`` beats the config's ``data_dir`` beats
the platform default. Every directory that holds secrets is 0700.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "paranoim"
ENV_DATA_DIR = "PARANOIM_DATA_DIR"
ENV_CONFIG = "PARANOIM_CONFIG"
CONFIG_NAME = "config.toml"
RUNTIME_NAME = "runtime.json"
LOCK_NAME = "daemon.lock"
CONTROL_SOCKET = "control.sock"
# sun_path is 108 bytes on Linux and 104 on macOS; longer paths fall back to TCP.
MAX_SOCKET_PATH = 100


def default_config_file() -> Path:
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / CONFIG_NAME


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def resolve_data_dir(cli_value: str | None, config_value: str = "") -> Path:
    """The data directory, by the precedence in this module's header."""
    for value in (cli_value, os.environ.get(ENV_DATA_DIR), config_value):
        if value:
            return Path(value).expanduser().resolve()
    return default_data_dir()


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700; return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def runtime_file(data_dir: Path) -> Path:
    return data_dir / RUNTIME_NAME


def lock_file(data_dir: Path) -> Path:
    return data_dir / LOCK_NAME


def control_socket(data_dir: Path) -> Path | None:
    """The control socket's path, or None when the path is too long for a socket."""
    path = data_dir / CONTROL_SOCKET
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None
