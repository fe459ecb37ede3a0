"""The daemon's faces, each a part (``bridge.parts``): the embedded XMPP listener,
the XEP-0114 component and the web UI, all over the one service.

Each face tells the service the settings a person types into a client (the
listener's when it runs, else the component's), and a port it cannot have is
said with the option that changes it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bridge.config import Config, component_secret
from bridge.ports import bind, port_error
from bridge.service import Service
from bridge.xmpp.c2s import C2SServer
from bridge.xmpp.component import Component
from webui.app import create_app

HOST = "127.0.0.1"  # the faces answer this machine only


class XmppListener:
    name = "XMPP listener"

    def __init__(self, cfg: Config, service: Service, data_dir: Path) -> None:
        self.cfg = cfg
        self.service = service
        self.server = C2SServer(service, HOST, cfg.xmpp_port, data_dir, domain=cfg.xmpp_domain)

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def fingerprint(self) -> str:
        return self.server.fingerprint

    async def start(self) -> None:
        try:
            await self.server.start()
        except OSError as exc:
            raise port_error(exc, HOST, self.cfg.xmpp_port, "XMPP listener",
                             "--xmpp-port") from None
        self.service.set_xmpp_settings(dict(self.server.settings()))

    async def stop(self) -> None:
        await self.server.close()


class ComponentFace:
    name = "XMPP component"

    def __init__(self, cfg: Config, service: Service, data_dir: Path) -> None:
        self.cfg = cfg
        self.service = service
        host, _, port = cfg.component_server.rpartition(":")
        self.component = Component(service, cfg.component_domain, host.strip("[]"), int(port),
                                   component_secret(cfg), data_dir,
                                   server_domains=cfg.component_user_domains or None)

    async def start(self) -> None:
        await self.component.start()
        if not self.cfg.xmpp_listener:
            self.service.set_xmpp_settings(dict(self.component.settings()))

    async def stop(self) -> None:
        await self.component.close()

    def status(self) -> dict[str, object]:
        return {**self.component.settings(), "connected": self.component.connected.is_set()}


class WebFace:
    name = "web UI"

    def __init__(self, cfg: Config, service: Service, access_token: str) -> None:
        self.cfg = cfg
        self.service = service
        self.access_token = access_token
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        """Where the web UI listens; opens nothing without the token."""
        return f"http://{HOST}:{self.port}/" if self.port else ""

    @property
    def url(self) -> str:
        """The link that opens a session: a secret, never printed or logged."""
        return f"{self.address}?token={self.access_token}" if self.port else ""

    async def start(self) -> None:
        # Bind first: the app must know its port (for the Host allowlist) before it exists.
        sock = bind(HOST, self.cfg.web_port, "web UI", "--web-port")
        try:
            port = int(sock.getsockname()[1])
            app = create_app(self.service, access_token=self.access_token,
                             allowed_hosts={f"{HOST}:{port}", f"localhost:{port}"})
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=3)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self.port = port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
