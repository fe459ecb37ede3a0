"""The ``paranoim`` subcommands, one small function each, and what they print.

Each takes the parsed arguments and returns an exit status; errors are raised
and turned into one line and a status by ``bridge.cli.main``. Commands that
act on identities, contacts and peers go through ``bridge.backend``: the
running daemon if there is one, else the key file itself.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.config import Config, ConfigError, check_run
from bridge.config import load as load_config
from bridge.core.errors import UserError
from bridge.exits import EXIT_OK
from bridge.paths import default_config_file, resolve_data_dir

if TYPE_CHECKING:
    from bridge.backend import Backend

# The heavy modules (aiohttp, slixmpp, the service) are imported by the commands that
# need them: the worker processes the daemon spawns import this module again.
NEW_PASSPHRASE_ENV = "PARANOIM_NEW_PASSPHRASE"  # noqa: S105 - the variable's name


def out(line: str = "") -> None:
    print(line, flush=True)


def note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- helpers -------------------------------------------------------------------------


def _setup(args: argparse.Namespace, *, create_config: bool = False) -> tuple[Config, Path]:
    path = Path(args.config).expanduser() if args.config else default_config_file()
    if args.config and not path.exists():
        raise ConfigError(f"there is no config file {path}; check --config")
    cfg = load_config(path, create=True) if (create_config or path.exists()) else Config()
    return cfg, resolve_data_dir(args.data_dir, cfg.data_dir)


def print_identity(ident: dict[str, Any]) -> None:
    out(f"{ident['nick']}")
    out(f"  Address:     {ident['address']}")
    if ident["jid"]:
        out(f"  JID:         {ident['jid']}")
    else:  # component mode, and no account has registered this identity yet
        out(f"  JID:         none linked yet: register with {ident['gateway']} from your own "
            "Jabber account, giving the username and password below")
        out(f"  Username:    {ident['username']}")
    out(f"  Password:    {ident['password']}")
    out(f"  Fingerprint: {ident['fingerprint']}")


def _client_hint(args: argparse.Namespace, status: dict[str, Any] | None) -> str:
    cfg = _setup(args)[0]
    port = status["ports"].get("xmpp") if status else (cfg.xmpp_port if cfg.xmpp_listener
                                                        else None)
    component = (status or {}).get("component", {}).get("domain") or cfg.component_domain
    if port is None and component:
        return (f"From your own Jabber account, register with the gateway {component} "
                "(service discovery → Register) to use an identity.")
    if not port:  # 0 in the config: any free port, chosen when the daemon starts
        return ("Log in with your Jabber client: server 127.0.0.1, the XMPP port "
                "`paranoim run` prints, STARTTLS.")
    return f"Log in with your Jabber client: server 127.0.0.1, port {port}, STARTTLS."


def print_qr(text: str) -> None:
    import segno

    qr = segno.make_qr(text, error="m")
    compact = (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"
    qr.terminal(out=sys.stdout, compact=compact, border=2)
    sys.stdout.flush()


class ProgressLine:
    """Progress on stderr: rewritten in place on a terminal, a line a second otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def show(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + text.ljust(78)[:120])
            sys.stderr.flush()
        elif now - self._last >= 1.0:
            note(text)
            self._last = now

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


async def _mine(backend: Backend, nick: str, prefix: str) -> dict[str, Any]:
    job = await backend.call("start_vanity", nick=nick, prefix=prefix)
    secs = job["expected_seconds"]
    note(f"Searching for an address starting with '{job['prefix']}': about "
         f"{job['expected_attempts']:,.0f} keys, expected {secs:.1f} s on this machine. "
         "Ctrl-C cancels.")
    bar = ProgressLine()
    try:
        while True:
            p = await backend.call("vanity", job_id=job["job"])
            left = max(0.0, (p["expected_attempts"] - p["attempts"]) / p["rate"]) \
                if p["rate"] else secs
            bar.show(f"  {p['attempts']:,} keys tried, {p['rate']:,.0f}/s, "
                     f"{p['elapsed']:.1f} s elapsed, about {left:.0f} s to go")
            if p["done"]:
                bar.done()
                if p["identity"] is None:
                    raise UserError(f"the vanity search ended without a result: {p['error']}")
                return dict(p["identity"])
            await asyncio.sleep(0.25)
    except (asyncio.CancelledError, KeyboardInterrupt):
        bar.done()
        await backend.call("cancel_vanity", job_id=job["job"])
        raise


# --- commands --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.backend import passphrase_for
    from bridge.daemon import Daemon

    cfg, data_dir = _setup(args, create_config=True)
    cfg = cfg.override(xmpp_port=args.xmpp_port, web_port=args.web_port,
                       p2p_port=args.p2p_port, storage=args.storage,
                       difficulty=args.difficulty, log_level=args.log_level,
                       peers=tuple(args.peer) if args.peer else None,
                       tor=True if args.tor else None,
                       light=True if args.light else None,
                       announce=args.advertise,
                       xmpp_listener=False if args.no_xmpp_listener else None,
                       chat_states=True if args.chat_states else None,
                       markers=True if args.markers else None,
                       presence=True if args.presence else None,
                       sessions=False if args.no_sessions else None,
                       component_domain=args.component_domain,
                       component_server=args.component_server,
                       component_secret_file=args.component_secret_file,
                       open_browser=True if args.open else None,
                       tray=True if args.tray else None)
    check_run(cfg)
    logging.getLogger().setLevel(cfg.log_level.upper())
    passphrase = passphrase_for(data_dir)
    daemon = Daemon(cfg, data_dir, passphrase, out=out, open_browser=cfg.open_browser,
                    tray=cfg.tray)
    asyncio.run(daemon.run())
    return EXIT_OK


async def _with_backend(args: argparse.Namespace,
                        body: Callable[[Backend], Any]) -> int:
    from bridge.backend import open_backend

    cfg, data_dir = _setup(args)
    async with open_backend(cfg, data_dir) as backend:
        result = await body(backend)
        if not backend.remote and getattr(args, "_note_offline", False):
            note("(ParanoIM is not running; the change is saved and used when it starts)")
        return int(result or 0)


def cmd_id_new(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        if args.vanity:
            ident = await _mine(b, args.nick, args.vanity)
        else:
            ident = await b.call("create_identity", nick=args.nick)
        print_identity(ident)
        out(_client_hint(args, await b.call("status") if b.remote else None))
        return EXIT_OK
    args._note_offline = True
    return asyncio.run(_with_backend(args, body))


def cmd_id_list(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        idents = await b.call("identities")
        if not idents:
            out("No identity yet. Create one with: paranoim id new NICK")
        for n, ident in enumerate(idents):
            if n:
                out()
            print_identity(ident)
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def cmd_invite(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        inv = await b.call("invite", who=args.nick or "")
        out(f"Invitation for {inv['identity']['nick']} ({inv['identity']['fingerprint']}):")
        out(inv["link"])
        if not args.no_qr:
            print_qr(inv["link"])
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def cmd_contact_add(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        c = await b.call("add_contact", who=args.id or "", link=args.link, name=args.name or "")
        out(f"Added {c['petname']} ({c['fingerprint']})")
        out(f"  Address: {c['address']}")
        out(f"  JID:     {c['jid']}")
        return EXIT_OK
    args._note_offline = True
    return asyncio.run(_with_backend(args, body))


def cmd_contact_list(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        for c in await b.call("contacts", who=args.id or ""):
            out(f"{c['petname']:<20} {c['state']:<10} {c['jid']}")
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def cmd_peers(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        if args.action == "add":
            await b.call("add_peer", peer=args.peer)
            out(f"Added peer {args.peer}")
        elif args.action == "remove":
            await b.call("remove_peer", peer=args.peer)
            out(f"Removed peer {args.peer}")
        else:
            peers = await b.call("peers")
            if not peers:
                out("No peers. Add one with: paranoim peers add HOST:PORT")
            for p in peers:
                extra = ", ".join(f"{k} {v}" for k, v in p.items() if k != "address")
                out(f"{p.get('address', '?')}  {extra}")
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def cmd_status(args: argparse.Namespace) -> int:
    async def body(b: Backend) -> int:
        s = await b.call("status")
        ports = s.get("ports", {})
        out(f"ParanoIM {s.get('version', '?')} running (pid {s.get('pid')}), "
            f"data in {s.get('data_dir')}")
        if "xmpp" in ports:
            out(f"  XMPP:     127.0.0.1:{ports['xmpp']} (certificate SHA-256 "
                f"{s.get('fingerprint') or '?'})")
        if s.get("component"):
            c = s["component"]
            out(f"  Component: {c.get('domain')} on {c.get('server')}, "
                f"{'connected' if c.get('connected') else 'reconnecting'}, "
                f"{c.get('linked_users', 0)} linked users")
        out(f"  P2P:      port {ports.get('p2p', '?')}, {len(s.get('peers', []))} peers, "
            f"{s.get('stored_envelopes', 0)} envelopes stored, storage {s.get('storage')}, "
            f"Tor {s.get('tor')}, difficulty {s.get('difficulty_bits')} bits"
            + (", network paused" if s.get("paused") else ""))
        shards = ", ".join(s.get("shards") or ["0/0"])
        if s.get("carrying"):
            c = s["carrying"]
            out(f"  Shards:   {shards} (depth {c.get('depth')}, chosen by intake: "
                f"{c.get('taken_mb_day')} MB a day over the last {c.get('measured_s', 0) // 60} "
                f"min, budget {c.get('budget_mb_day')})")
        elif shards != "0/0":
            out(f"  Shards:   {shards}")
        if s.get("direct"):
            d = s["direct"]
            where = d.get("endpoint") or "no endpoint announced (see --advertise, --tor)"
            out(f"  Direct:   {where}; {d.get('sent', 0)} sent directly, "
                f"{d.get('fallback', 0)} sent by gossip after a failed direct attempt, "
                f"{d.get('received', 0)} received directly, "
                f"{d.get('contacts_with_endpoint', 0)} contacts with an endpoint")
        if s.get("web_url"):
            out(f"  Web UI:   {s['web_url']} (open it with `paranoim open`)")
        out(f"  Identities: {s.get('identities', 0)}")
        for e in s.get("recent_errors", [])[-5:]:
            out(f"  recent error: {e}")
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def cmd_stop(args: argparse.Namespace) -> int:
    from bridge.backend import daemon_status, not_running
    from bridge.control import DaemonNotRunningError

    _, data_dir = _setup(args)
    status = daemon_status(data_dir)
    if status is None:
        raise DaemonNotRunningError(not_running(data_dir))

    async def body(b: Backend) -> int:
        await b.call("stop")
        return EXIT_OK
    asyncio.run(_with_backend(args, body))
    deadline = time.monotonic() + 30
    while daemon_status(data_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    out(f"Stopped ParanoIM (pid {status['pid']}).")
    return EXIT_OK


def cmd_open(args: argparse.Namespace) -> int:
    """Open the web UI with the running daemon's access token (or print that link)."""
    import webbrowser

    from bridge.backend import daemon_status, not_running
    from bridge.control import DaemonNotRunningError

    _, data_dir = _setup(args)
    if daemon_status(data_dir) is None:
        raise DaemonNotRunningError(not_running(data_dir))

    async def body(b: Backend) -> int:
        link = str((await b.call("web_link"))["link"])
        if args.print:
            out(link)
        elif not webbrowser.open(link):
            out("No browser could be started here; open this link in a browser on this "
                f"machine (it is a secret: anyone with it controls your keys):\n{link}")
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def _new_passphrase() -> str | None:
    if NEW_PASSPHRASE_ENV in os.environ:
        return os.environ[NEW_PASSPHRASE_ENV] or None
    if not sys.stdin.isatty():
        raise UserError(f"give the new passphrase in {NEW_PASSPHRASE_ENV} or run this in a "
                        "terminal")
    first = getpass.getpass("New passphrase (empty: store the keys unencrypted): ")
    if first and getpass.getpass("The same again: ") != first:
        raise UserError("the two passphrases differ; nothing was changed")
    return first or None


def cmd_passphrase(args: argparse.Namespace) -> int:
    new = None if args.action == "clear" else _new_passphrase()
    if args.action == "set" and not new:
        raise UserError("an empty passphrase; to store the keys unencrypted use "
                        "`paranoim passphrase clear`")

    async def body(b: Backend) -> int:
        note("Re-encrypting the key file (Argon2id takes a moment)…")
        await b.call("set_passphrase", passphrase=new)
        out("The key file is now " + ("encrypted with the new passphrase." if new
                                      else "stored without a passphrase."))
        return EXIT_OK
    return asyncio.run(_with_backend(args, body))


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    logging.getLogger().setLevel((args.log_level or "warning").upper())
    asyncio.run(run_demo(xmpp_port=args.xmpp_port, web_port=args.web_port,
                         nodes=args.nodes, out=out, open_browser=args.open))
    return EXIT_OK


def cmd_service(args: argparse.Namespace) -> int:
    from bridge import svcinstall

    kind = args.kind or svcinstall.default_kind()
    if args.action == "install":
        _, data_dir = _setup(args)
        explicit = args.data_dir or os.environ.get("PARANOIM_DATA_DIR")
        outcome = svcinstall.install(kind, data_dir if explicit else None)
    elif args.action == "uninstall":
        outcome = svcinstall.uninstall(kind)
    else:
        outcome = svcinstall.status(kind)
    for line in outcome.lines:
        out(line)
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    path = Path(args.config).expanduser() if args.config else default_config_file()
    _, data_dir = _setup(args, create_config=True)
    out(f"Config file: {path} (valid)")
    out(f"Data dir:    {data_dir}")
    return EXIT_OK
