"""A real Prosody in the foreground, with a generated config, for interop tests.

Runs as the unprivileged test user (Prosody refuses root) from a private temp dir holding
its config, data, log and a self-signed certificate for the virtual host. c2s and the
component port are free loopback ports; s2s and HTTP are off. With ``component`` set, an
XEP-0114 component is declared with a secret, and the virtual host grants it XEP-0356
privileges through prosody-modules' mod_privilege.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from ._common import (
    DriverError,
    RunAs,
    find_program,
    free_tcp_port,
    poll_until,
    port_accepts,
    run_as,
    stop_process,
    tail,
)
from .certs import CertFiles, make_self_signed

_MODULES = [
    "roster",
    "saslauth",
    "tls",
    "disco",
    "carbons",
    "pep",
    "private",
    "blocklist",
    "vcard4",
    "vcard_legacy",
    "version",
    "uptime",
    "time",
    "ping",
    "posix",
    "offline",
]


def _lua(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody:
    """One Prosody server. ``start()`` returns once c2s (and the component port) accept."""

    def __init__(
        self,
        *,
        domain: str = "localhost",
        component: str | None = None,
        component_secret: str | None = None,
        privileges: bool = True,
        extra_global: str = "",
        extra_host: str = "",
    ) -> None:
        self.prosody = find_program("prosody", "prosody")
        self.prosodyctl = find_program("prosodyctl", "prosody")
        self.domain = domain
        self.component = component
        self.component_secret = component_secret or secrets.token_hex(16)
        self.privileges = privileges
        self.extra_global = extra_global
        self.extra_host = extra_host
        self.user: RunAs = run_as()
        self.dir: Path = self.user.make_dir("paranoim-prosody-")
        self.config = self.dir / "prosody.cfg.lua"
        self.log = self.dir / "prosody.log"
        self.c2s_port = free_tcp_port()
        self.component_port = free_tcp_port()
        self.cert: CertFiles = make_self_signed(self.dir / "certs", domain)
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    # --- configuration -----------------------------------------------------------------

    def _write_config(self) -> None:
        d = self.dir
        (d / "data").mkdir(mode=0o700, exist_ok=True)
        # mod_privilege must run both on the granting host and on the component itself.
        wanted = _MODULES + (["privilege"] if self.component and self.privileges else [])
        modules = "; ".join(_lua(m) for m in wanted)
        lines = [
            f"pidfile = {_lua(str(d / 'prosody.pid'))}",
            f"data_path = {_lua(str(d / 'data'))}",
            f'log = {{ {{ levels = {{ min = "debug" }}, to = "file", '
            f"filename = {_lua(str(self.log))} }} }}",
            'interfaces = { "127.0.0.1" }',
            f"c2s_ports = {{ {self.c2s_port} }}",
            "c2s_direct_tls_ports = { }",
            'c2s_interfaces = { "127.0.0.1" }',
            f"component_ports = {{ {self.component_port} }}",
            'component_interfaces = { "127.0.0.1" }',
            "s2s_ports = { }",
            'modules_disabled = { "s2s" }',
            f"modules_enabled = {{ {modules} }}",
            'authentication = "internal_hashed"',
            'storage = "internal"',
            "c2s_require_encryption = true",
            "allow_registration = false",
            "daemonize = false",
            self.extra_global,
            "",
            f"VirtualHost {_lua(self.domain)}",
            f"  ssl = {{ key = {_lua(str(self.cert.key))}; "
            f"certificate = {_lua(str(self.cert.cert))} }}",
        ]
        if self.component and self.privileges:
            lines.append(
                f"  privileged_entities = {{ [{_lua(self.component)}] = "
                '{ roster = "both"; message = "outgoing"; presence = "roster" } }'
            )
        lines.append(self.extra_host)
        if self.component:
            lines += [
                "",
                f"Component {_lua(self.component)}",
                f"  component_secret = {_lua(self.component_secret)}",
            ]
            if self.privileges:
                lines.append('  modules_enabled = { "privilege" }')
        self.config.write_text("\n".join(lines) + "\n")
        self.user.chown_tree(self.dir)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Prosody:
        if self.proc is not None:
            raise DriverError("Prosody already started")
        out = open(self.dir / "stdout.log", "wb")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            self.user.wrap([self.prosody, "--config", str(self.config), "-F"]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=self._env(),
        )
        self._stdout = out
        ports = [self.c2s_port] + ([self.component_port] if self.component else [])

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise DriverError(
                    f"prosody exited with {self.proc.returncode}\n{self.diagnostics()}"
                )
            return all(port_accepts(p) for p in ports)

        try:
            poll_until(ready, timeout, f"prosody listening on {ports}", on_timeout=self.diagnostics)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None
            self._stdout.close()

    def cleanup(self) -> None:
        """Stop and delete the temp dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Prosody:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # --- accounts ----------------------------------------------------------------------

    def register(self, user: str, password: str) -> str:
        """Create ``user@domain`` with ``password`` (works before and after start)."""
        proc = subprocess.run(
            self.user.wrap(
                [
                    self.prosodyctl,
                    "--config",
                    str(self.config),
                    "register",
                    user,
                    self.domain,
                    password,
                ]
            ),
            capture_output=True,
            text=True,
            cwd=self.dir,
            env=self._env(),
            timeout=30,
        )
        if proc.returncode != 0:
            raise DriverError(
                f"prosodyctl register {user} failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
            )
        return f"{user}@{self.domain}"

    # --- diagnostics -------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def diagnostics(self) -> str:
        return tail(self.dir / "stdout.log", 2000) + "\n" + tail(self.log)

    def _env(self) -> dict[str, str]:
        return {
            "HOME": str(self.dir),
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
        }
