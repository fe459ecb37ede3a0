"""The ports the daemon (and the demo) listen on: checked before anything starts,
and every failure to bind said in words that name the option changing the port.

A busy port is a ``PortInUseError`` (its own exit code); no permission to bind a
low port too, since the cure is the same: another port.
"""

from __future__ import annotations

import errno
import socket

from bridge.core.errors import UserError


class PortInUseError(UserError):
    """A port the daemon needs is taken."""


def port_error(exc: OSError, host: str, port: int, what: str, option: str) -> UserError:
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(f"port {port} for the {what} is already in use on {host}; "
                              f"stop the program using it or choose another port with {option}")
    if exc.errno == errno.EACCES:
        return PortInUseError(f"no permission to listen on port {port} for the {what}; "
                              f"choose a port above 1023 with {option}")
    return UserError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}")


def bind(host: str, port: int, what: str, option: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), or the error in words."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise port_error(exc, host, port, what, option) from None
    return sock


def check_port_free(host: str, port: int, what: str, option: str) -> None:
    """Raise the port's error now if ``host:port`` cannot be bound (0: any port, fine)."""
    if port:
        bind(host, port, what, option).close()
