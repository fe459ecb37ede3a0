"""Every arrow points down: the core imports nothing above it, the network shells
and stores know no service or face, and the faces (XMPP, web UI) reach the rest
only through the service interface and the events it sends."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACE_MAY_USE = ("bridge.api", "bridge.events", "bridge.core.errors", "bridge.core.address",
                "bridge.core.peers", "bridge.tasks", "bridge.paths", "bridge.xmpp", "webui")
# What each layer must never import (a prefix matches the module and its children).
FORBIDDEN = {
    "bridge.core": ("bridge.net", "bridge.store", "bridge.xmpp", "bridge.service", "webui",
                    "asyncio", "aiohttp", "slixmpp", "sqlite3", "socket", "subprocess"),
    "bridge.net": ("bridge.service", "bridge.xmpp", "webui", "bridge.daemon", "bridge.inbox",
                   "bridge.outbox", "bridge.identities", "bridge.contacts", "bridge.cli"),
    "bridge.store": ("bridge.net", "bridge.service", "bridge.xmpp", "webui", "bridge.daemon"),
}
ROOMS = ("bridge.identities", "bridge.contacts", "bridge.outbox", "bridge.inbox",
         "bridge.peerbook", "bridge.upkeep", "bridge.service", "bridge.events", "bridge.tasks")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    package = _module(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


SOURCES = sorted([*ROOT.joinpath("bridge").rglob("*.py"), *ROOT.joinpath("webui").rglob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module(p))
def test_arrows_point_down(path: Path) -> None:
    mod = _module(path)
    imports = _imports(path)
    for layer, banned in FORBIDDEN.items():
        if _under(mod, (layer,)):
            bad = sorted(i for i in imports if _under(i, banned))
            assert not bad, f"{mod} ({layer}) imports {bad}"
    if _under(mod, ("bridge.xmpp", "webui")):
        own = [i for i in imports if _under(i, ("bridge", "webui"))]
        bad = sorted(i for i in own if not _under(i, FACE_MAY_USE))
        assert not bad, f"the face {mod} reaches past the service: {bad}"
    if _under(mod, ROOMS):
        bad = sorted(i for i in imports if _under(i, ("bridge.xmpp", "webui", "bridge.daemon",
                                                       "bridge.cli", "bridge.control")))
        assert not bad, f"the service room {mod} imports a face or the daemon: {bad}"


def test_the_check_sees_imports() -> None:
    """The walker finds plain, from- and nested imports (so a pass means something)."""
    imports = _imports(ROOT / "bridge" / "service.py")
    assert {"bridge.inbox", "bridge.outbox", "bridge.core.records"} <= imports
    assert len(SOURCES) > 50
