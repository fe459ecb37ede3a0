"""Drivers that run real programs nobody here wrote, for interop and web tests.

Each starts a process, waits for it with a deadline (never a fixed sleep) and stops it.
Programs that refuse root run as the ``paranoim-test`` user when the tests run as root.
"""

from ._common import (
    TEST_USER,
    DriverError,
    DriverTimeout,
    ProgramMissing,
    RunAs,
    apoll_until,
    find_program,
    free_tcp_port,
    poll_until,
    port_accepts,
    run_as,
)
from .certs import CertFiles, make_self_signed
from .ejabberd import Ejabberd
from .finch import Finch
from .poezio import Poezio
from .profanity import Profanity
from .prosody import Prosody
from .slix import Received, SlixClient
from .socks import Microsocks
from .tmux import TmuxSession
from .tor import Tor, TorControl

__all__ = [
    "TEST_USER",
    "CertFiles",
    "DriverError",
    "DriverTimeout",
    "Ejabberd",
    "Finch",
    "Microsocks",
    "Poezio",
    "Profanity",
    "ProgramMissing",
    "Prosody",
    "Received",
    "RunAs",
    "SlixClient",
    "TmuxSession",
    "Tor",
    "TorControl",
    "apoll_until",
    "find_program",
    "free_tcp_port",
    "make_self_signed",
    "poll_until",
    "port_accepts",
    "run_as",
]
