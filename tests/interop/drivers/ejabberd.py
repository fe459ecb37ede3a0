"""A real ejabberd (Debian's 23.01) in the foreground, a private instance for interop tests.

``ejabberdctl`` runs only as root (it then switches to the ``ejabberd`` user the package
creates) or as that user; the driver runs it as the ``ejabberd`` user directly, from a
private directory holding the config, the Mnesia spool, the logs and a self-signed
certificate. The Erlang distribution listens on a free port of its own
(``ERL_DIST_PORT``), so no epmd is started and no system instance is touched. c2s and the
component port are free loopback ports. With ``component`` set, an XEP-0114 component is
declared with a secret; with ``privileges``, ``mod_privilege`` grants it roster and
message access through an access rule, as the user guide's snippet does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess

from ._common import (
    DriverError,
    ProgramMissing,
    RunAs,
    find_program,
    free_tcp_port,
    poll_until,
    port_accepts,
    tail,
)
from .certs import CertFiles, make_self_signed

INSTALL_USER = "ejabberd"  # the user Debian's package creates and ejabberdctl insists on


def _run_as_ejabberd() -> RunAs:
    try:
        entry = pwd.getpwnam(INSTALL_USER)
    except KeyError:
        raise ProgramMissing("ejabberd", "ejabberd") from None
    if os.geteuid() == entry.pw_uid:
        return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, ())
    if os.geteuid() != 0:
        raise ProgramMissing("ejabberd (run as root or as the ejabberd user)", "ejabberd")
    setpriv = find_program("setpriv", "util-linux")
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name,
                 (setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                  "--clear-groups", "--"))


def _yaml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Ejabberd:
    """One ejabberd server. ``start()`` returns once c2s (and the component port) accept."""

    def __init__(self, *, domain: str = "localhost", component: str | None = None,
                 component_secret: str | None = None, privileges: bool = True) -> None:
        self.ejabberdctl = find_program("ejabberdctl", "ejabberd")
        self.user = _run_as_ejabberd()
        self.domain = domain
        self.component = component
        self.component_secret = component_secret or secrets.token_hex(16)
        self.privileges = privileges
        self.dir = self.user.make_dir("paranoim-ejabberd-")
        self.config = self.dir / "ejabberd.yml"
        self.ctl_config = self.dir / "ejabberdctl.cfg"
        self.log = self.dir / "log" / "ejabberd.log"
        self.c2s_port = free_tcp_port()
        self.component_port = free_tcp_port()
        self.dist_port = free_tcp_port()
        self.cert: CertFiles = make_self_signed(self.dir / "certs", domain)
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        d = self.dir
        for sub in ("log", "db", "modules.d"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
        pem = d / "server.pem"
        pem.write_text(self.cert.cert.read_text() + self.cert.key.read_text())
        pem.chmod(0o600)
        (d / "inetrc").write_text('{lookup,["file","native"]}.\n'
                                  '{host,{127,0,0,1}, ["localhost"]}.\n')
        lines = [
            f"hosts: [{_yaml(self.domain)}]",
            "loglevel: info",
            f"certfiles: [{_yaml(str(pem))}]",
            "auth_method: internal",
            "s2s_access: none",
            "listen:",
            f"  - port: {self.c2s_port}",
            '    ip: "127.0.0.1"',
            "    module: ejabberd_c2s",
            "    starttls_required: true",
        ]
        if self.component:
            lines += [
                f"  - port: {self.component_port}",
                '    ip: "127.0.0.1"',
                "    module: ejabberd_service",
                "    hosts:",
                f"      {_yaml(self.component)}:",
                f"        password: {_yaml(self.component_secret)}",
                "acl:",
                "  paranoim_gateway:",
                f"    server: {_yaml(self.component)}",
                "access_rules:",
                "  paranoim_gateway_access:",
                "    allow: paranoim_gateway",
            ]
        lines += ["modules:", "  mod_roster: {}", "  mod_disco: {}", "  mod_ping: {}"]
        if self.component and self.privileges:
            lines += [
                "  mod_privilege:",
                "    roster:",
                "      both: paranoim_gateway_access",
                "    message:",
                "      outgoing: paranoim_gateway_access",
            ]
        self.config.write_text("\n".join(lines) + "\n")
        self.ctl_config.write_text(
            f"ERLANG_NODE=paranoim{secrets.token_hex(4)}@localhost\n"
            f"ERL_DIST_PORT={self.dist_port}\n"
            f"EJABBERD_PID_PATH={d / 'ejabberd.pid'}\n"
            f"CONTRIB_MODULES_CONF_DIR={d / 'modules.d'}\n")
        self.user.chown_tree(d)

    def _ctl(self, *args: str) -> list[str]:
        d = self.dir
        return self.user.wrap([self.ejabberdctl, "--config-dir", str(d), "--config",
                               str(self.config), "--ctl-config", str(self.ctl_config),
                               "--logs", str(d / "log"), "--spool", str(d / "db"), *args])

    def _env(self) -> dict[str, str]:
        return {"HOME": str(self.dir), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "LANG": "C.UTF-8"}

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Ejabberd:
        if self.proc is not None:
            raise DriverError("ejabberd already started")
        out = open(self.dir / "stdout.log", "wb")  # noqa: SIM115 — closed in stop()
        self._stdout = out
        # its own process group: ejabberdctl's shell, the Erlang VM and its helpers
        self.proc = subprocess.Popen(self._ctl("foreground"), stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=self._env(), start_new_session=True)
        ports = [self.c2s_port] + ([self.component_port] if self.component else [])

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise DriverError(f"ejabberd exited with {self.proc.returncode}\n"
                                  f"{self.diagnostics()}")
            return all(port_accepts(p) for p in ports)

        try:
            poll_until(ready, timeout, f"ejabberd listening on {ports}",
                       on_timeout=self.diagnostics)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers the VM left behind
        self._stdout.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- accounts ----------------------------------------------------------------------

    def register(self, user: str, password: str) -> str:
        proc = subprocess.run(self._ctl("register", user, self.domain, password),
                              capture_output=True, text=True, cwd=self.dir, env=self._env(),
                              timeout=60)
        if proc.returncode != 0:
            raise DriverError(f"ejabberdctl register {user} failed ({proc.returncode}): "
                              f"{proc.stdout}{proc.stderr}")
        return f"{user}@{self.domain}"

    # --- diagnostics -------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def diagnostics(self) -> str:
        return tail(self.dir / "stdout.log", 2000) + "\n" + tail(self.log)
