"""The ``paranoim`` command (also ``python -m bridge``).

Each subcommand is a small function; ``main`` parses, resolves the config and
data directory, runs the command and maps every error to one line on stderr
and an exit code (the table ``exit_codes()``; docs/user-guide.md lists them). An
error that came back from the daemon over the control channel is raised again
as its own class, so the code is the same whether the daemon runs or not. No
traceback reaches the person unless ``--log-level debug`` asks for it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import __version__
from bridge.config import ENV_COMPONENT_SECRET, LOG_LEVELS, STORAGES, Config, ConfigError, check_run
from bridge.config import load as load_config
from bridge.core.errors import UserError
from bridge.paths import default_config_file, resolve_data_dir

if TYPE_CHECKING:
    from bridge.backend import Backend

# The heavy modules (aiohttp, slixmpp, the service) are imported by the commands that
# need them: the worker processes the daemon spawns import this module again.

# The worker processes import this module again as their main module. Ctrl-C in a
# terminal reaches the whole process group, and only the daemon decides how to stop
# (it closes the pool), so a worker ignores SIGINT rather than print a traceback.
if multiprocessing.current_process().name != "MainProcess":
    signal.signal(signal.SIGINT, signal.SIG_IGN)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PORT, EXIT_PASSPHRASE = 0, 1, 2, 3, 4
EXIT_NOT_RUNNING, EXIT_RUNNING, EXIT_INTERRUPTED, EXIT_BUG = 5, 6, 130, 70
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what a shell reports for a closed pipe
KINDS = ("systemd", "autostart", "launchd")


def exit_codes() -> list[tuple[type[BaseException], int, str]]:
    """(error type, exit code, hint added to its message), most specific first."""
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
                       announce=args.advertise,
                       xmpp_listener=False if args.no_xmpp_listener else None,
                       chat_states=True if args.chat_states else None,
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
        if s.get("direct"):
            d = s["direct"]
            where = d.get("endpoint") or "no endpoint announced (see --advertise, --tor)"
            out(f"  Direct:   {where}; {d.get('sent', 0)} sent directly, "
                f"{d.get('fallback', 0)} sent by gossip after a failed direct attempt, "
                f"{d.get('received', 0)} received directly, "
                f"{d.get('contacts_with_endpoint', 0)} contacts with an endpoint")
        if s.get("web_url"):
            out(f"  Web UI:   {s['web_url']}")
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


# --- the parser and main ---------------------------------------------------------------


def _common(default: Any) -> argparse.ArgumentParser:
    # The options every subcommand takes, before or after its name. Subcommands get
    # SUPPRESS defaults so they do not overwrite a value given before the name.
    common = argparse.ArgumentParser(add_help=False, argument_default=default)
    common.add_argument("--data-dir", help="where keys and data live "
                        "(default: PARANOIM_DATA_DIR, the config's data_dir, or the "
                        "platform's data directory)")
    common.add_argument("--config", help="the TOML config file (default: the platform's "
                        "config directory, or PARANOIM_CONFIG)")
    common.add_argument("--log-level", choices=LOG_LEVELS, help="how much to log on stderr")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common(argparse.SUPPRESS)
    p = argparse.ArgumentParser(
        prog="paranoim", parents=[_common(None)],
        description="Use your Jabber client over an anonymous, end-to-end encrypted P2P "
                    "network.")
    p.add_argument("--version", action="version", version=f"paranoim {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], text: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=text,
                                                        description=text)
        sp.set_defaults(func=fn)
        return sp

    run = add("run", cmd_run, "run the daemon in the foreground: P2P node, XMPP listener, "
              "web UI")
    run.add_argument("--xmpp-port", type=int, help="XMPP listener port on 127.0.0.1 "
                     "(default 5222)")
    run.add_argument("--web-port", type=int, help="web UI port on 127.0.0.1 (default 8765)")
    run.add_argument("--p2p-port", type=int, help="P2P node port (default 45069)")
    run.add_argument("--peer", action="append", metavar="HOST:PORT",
                     help="a bootstrap peer (repeatable)")
    run.add_argument("--storage", choices=STORAGES, help="memory (default) or sqlite")
    run.add_argument("--tor", action="store_true", help="connect to peers through Tor and "
                     "publish an onion service (announced for direct delivery)")
    run.add_argument("--advertise", "--announce", metavar="HOST:PORT",
                     help="the address others reach this P2P node at; announced to contacts "
                          "for direct delivery and put into invitations (never 0.0.0.0)")
    run.add_argument("--no-xmpp-listener", action="store_true",
                     help="no embedded XMPP listener (use with the component options)")
    run.add_argument("--chat-states", action="store_true",
                     help="send and show XEP-0085 typing notifications with accepted contacts "
                          "(off by default: they reveal when you type, and each costs a "
                          "small proof of work)")
    run.add_argument("--component-domain", metavar="DOMAIN",
                     help="run the gateway as an XEP-0114 component of your own XMPP "
                          "server under DOMAIN, e.g. p2p.example.org")
    run.add_argument("--component-server", metavar="HOST:PORT",
                     help="the server's component port (default 127.0.0.1:5347)")
    run.add_argument("--component-secret-file", metavar="FILE",
                     help="a file holding the server's component_secret (or set "
                          f"{ENV_COMPONENT_SECRET}; never on the command line, where every "
                          "user could read it)")
    run.add_argument("--difficulty", type=int, metavar="BITS",
                     help="base proof-of-work difficulty in bits")
    run.add_argument("--open", action="store_true", help="open the web UI in a browser")
    run.add_argument("--tray", action="store_true", help="show a tray icon "
                     "(needs paranoim[tray])")

    ident = add("id", lambda a: EXIT_USAGE, "identities: new, list").add_subparsers(
        dest="id_command", metavar="ACTION", required=True)
    new = add("new", cmd_id_new, "create an identity", ident)
    new.add_argument("nick", help="a nickname, shown only to you and your contacts")
    new.add_argument("--vanity", metavar="PREFIX", help="mine an address starting with PREFIX")
    add("list", cmd_id_list, "list identities with their JID and XMPP password", ident)

    inv = add("invite", cmd_invite, "print an invitation link and QR code")
    inv.add_argument("nick", nargs="?", help="which identity (default: the first)")
    inv.add_argument("--no-qr", action="store_true", help="print the link only")

    contact = add("contact", lambda a: EXIT_USAGE, "contacts: add, list").add_subparsers(
        dest="contact_command", metavar="ACTION", required=True)
    cadd = add("add", cmd_contact_add, "add a contact from a link or address", contact)
    cadd.add_argument("link", metavar="LINK-OR-ADDRESS")
    cadd.add_argument("--name", help="the petname you give the contact")
    cadd.add_argument("--id", metavar="NICK", help="for which of your identities")
    clist = add("list", cmd_contact_list, "list contacts", contact)
    clist.add_argument("--id", metavar="NICK", help="for which of your identities")

    peers = add("peers", cmd_peers, "list the P2P node's peers; add or remove one")
    peers.add_argument("action", nargs="?", choices=("list", "add", "remove"), default="list")
    peers.add_argument("peer", nargs="?", metavar="HOST:PORT")

    add("status", cmd_status, "show whether the daemon runs, and its state")
    add("stop", cmd_stop, "stop the running daemon")

    pp = add("passphrase", cmd_passphrase, "encrypt the key file with a passphrase, "
             "change or remove it")
    pp.add_argument("action", choices=("set", "clear"))

    demo = add("demo", cmd_demo, "a private local network with an echo contact, to try a "
               "Jabber client at once")
    demo.add_argument("--xmpp-port", type=int, default=5222)
    demo.add_argument("--web-port", type=int, default=0, help="web UI port (default: any)")
    demo.add_argument("--nodes", type=int, default=3, help="how many local nodes (2-8)")
    demo.add_argument("--open", action="store_true", help="open the web UI in a browser")

    svc = add("service", cmd_service, "start ParanoIM at login: install, uninstall, status")
    svc.add_argument("action", choices=("install", "uninstall", "status"))
    svc.add_argument("--kind", choices=KINDS,
                     help="systemd user unit, XDG autostart entry or launchd agent "
                          "(default: what this system has)")

    add("config", cmd_config, "check the config file and show where things are")
    return p


def _exit_code(exc: BaseException) -> tuple[int, str]:
    for cls, code, hint in exit_codes():
        if isinstance(exc, cls):
            return code, f"{exc}{hint}"
    return EXIT_BUG, f"unexpected {type(exc).__name__}: {exc} (run again with --log-level " \
                     "debug for details)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (args.log_level or ("info" if args.command == "run" else "warning")).upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "peers" and args.action in ("add", "remove") and not args.peer:
        parser.error(f"peers {args.action} needs HOST:PORT")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        note("paranoim: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`paranoim id list | head -3`): stop quietly, as
        # other command-line programs do, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SIGPIPE
    except Exception as exc:
        code, message = _exit_code(exc)
        if code == EXIT_BUG and args.log_level == "debug":
            traceback.print_exc()
        note(f"paranoim: error: {message}")
        return code


if __name__ == "__main__":
    sys.exit(main())
