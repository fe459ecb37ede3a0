"""How the ``paranoim`` command ends: its exit statuses, and which error ends with which.

docs/user-guide.md lists them (a test keeps the two in step). An error that came
back from the daemon over the control channel is raised again as its own class
(``bridge.control``), so a command ends the same whether the daemon runs or not.
"""

from __future__ import annotations

from bridge.config import ConfigError
from bridge.core.errors import UserError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PORT, EXIT_PASSPHRASE = 0, 1, 2, 3, 4
EXIT_NOT_RUNNING, EXIT_RUNNING, EXIT_INTERRUPTED, EXIT_BUG = 5, 6, 130, 70
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what a shell reports for a closed pipe


def exit_codes() -> list[tuple[type[BaseException], int, str]]:
    """(error type, exit code, hint added to its message), most specific first."""
    # imported here: the worker processes import the command's modules again, and
    # these pull in aiohttp
    from bridge.control import AlreadyRunningError, DaemonFailedError, DaemonNotRunningError
    from bridge.ports import PortInUseError
    from bridge.store.keystore import PassphraseNeededError, WrongPassphraseError

    return [
        (ConfigError, EXIT_USAGE, ""),
        (PortInUseError, EXIT_PORT, ""),
        (WrongPassphraseError, EXIT_PASSPHRASE,
         "; try again, or set PARANOIM_PASSPHRASE to the right one"),
        (PassphraseNeededError, EXIT_PASSPHRASE, ""),
        (DaemonNotRunningError, EXIT_NOT_RUNNING, ""),
        (AlreadyRunningError, EXIT_RUNNING, ""),
        (UserError, EXIT_ERROR, ""),
        (DaemonFailedError, EXIT_BUG, " (the daemon's log has the details)"),
    ]


def exit_code(exc: BaseException) -> tuple[int, str]:
    for cls, code, hint in exit_codes():
        if isinstance(exc, cls):
            return code, f"{exc}{hint}"
    return EXIT_BUG, f"unexpected {type(exc).__name__}: {exc} (run again with --log-level " \
                     "debug for details)"
