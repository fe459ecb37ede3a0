"""The ``paranoim`` command (also ``python -m bridge``).

The parser and ``main``: it parses, runs the subcommand (``bridge.commands``) and
maps every error to one line on stderr and an exit status (``bridge.exits``).
No traceback reaches the person unless ``--log-level debug`` asks for it.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from bridge import __version__
from bridge.commands import (
    cmd_config,
    cmd_contact_add,
    cmd_contact_list,
    cmd_demo,
    cmd_id_list,
    cmd_id_new,
    cmd_invite,
    cmd_open,
    cmd_passphrase,
    cmd_peers,
    cmd_run,
    cmd_service,
    cmd_status,
    cmd_stop,
    note,
)
from bridge.config import ENV_COMPONENT_SECRET, LOG_LEVELS, STORAGES
from bridge.exits import EXIT_BUG, EXIT_INTERRUPTED, EXIT_SIGPIPE, EXIT_USAGE, exit_code
from bridge.logprivacy import PrivateFormatter

# The worker processes import this module again as their main module. Ctrl-C in a
# terminal reaches the whole process group, and only the daemon decides how to stop
# (it closes the pool), so a worker ignores SIGINT rather than print a traceback.
if multiprocessing.current_process().name != "MainProcess":
    signal.signal(signal.SIGINT, signal.SIG_IGN)

KINDS = ("systemd", "autostart", "launchd")


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
    run.add_argument("--light", action="store_true", help="a light node: keep no envelopes "
                     "for others, fetch your shard from full nodes ([p2p] light)")
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
    run.add_argument("--markers", action="store_true",
                     help="send and show XEP-0333 read markers with accepted contacts (off "
                          "by default: they reveal when you read)")
    run.add_argument("--presence", action="store_true",
                     help="send and show real availability (online, away, offline) with "
                          "accepted contacts who turned it on too (off by default)")
    run.add_argument("--no-sessions", action="store_true",
                     help="send every message the version-1 way (no per-message forward "
                          "secrecy, not post-quantum): only for contacts whose daemon is "
                          "too old for sessions")
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
    web = add("open", cmd_open, "open the running daemon's web UI in a browser")
    web.add_argument("--print", action="store_true",
                     help="print the link (it carries the access token) instead")

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (args.log_level or ("info" if args.command == "run" else "warning")).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrivateFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
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
        code, message = exit_code(exc)
        if code == EXIT_BUG and args.log_level == "debug":
            traceback.print_exc()
        note(f"paranoim: error: {message}")
        return code


if __name__ == "__main__":
    sys.exit(main())
