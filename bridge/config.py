"""The daemon's configuration: a TOML file, validated key by key at start.

Read with ``tomllib``; on first run the file is written from ``DEFAULT_TEXT``,
every key present and commented, so a person sees what can be set. Each key
has one checker; an unknown key, a wrong type or an out-of-range value is a
``ConfigError`` naming the key and saying what it accepts. Command-line
options override the file (see ``Config.override``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge.core.checks import DEFAULT_BASE_BITS
from bridge.core.errors import BadPeerError, LocalProtocolError, UserError
from bridge.core.peers import parse_peer
from bridge.core.shards import EVERYTHING, KEY_BITS, Prefix, canonical, parse_prefix

DEFAULT_XMPP_PORT = 5222
DEFAULT_WEB_PORT = 8765
DEFAULT_P2P_PORT = 45069  # kkv's port
LOG_LEVELS = ("debug", "info", "warning", "error")
STORAGES = ("memory", "sqlite")
MIN_BITS, MAX_BITS = 1, 40
DEFAULT_MEMORY_BUDGET_MB, MIN_MEMORY_MB = 512, 32
ENV_COMPONENT_SECRET = "PARANOIM_COMPONENT_SECRET"  # noqa: S105 - the variable's name
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")

DEFAULT_TEXT = f"""\
# ParanoIM configuration. Every key is shown with its default value; remove the
# leading '#' to change one. Command-line options override what is set here.

# Where keys, the listener certificate and (with storage = "sqlite") the message
# store live. Empty: the platform's data directory. PARANOIM_DATA_DIR and
# --data-dir override it.
# data_dir = ""

# debug, info, warning or error
# log_level = "info"

[xmpp]
# The embedded Jabber server listens on 127.0.0.1 only. Point your client here.
# port = {DEFAULT_XMPP_PORT}
# domain = "localhost"
# false: no embedded listener (with the [component] below, your own server's
# users reach the gateway through it instead)
# listener = true
# XEP-0085 chat states ("typing…", "paused", "gone") sent to and shown from accepted
# contacts (--chat-states). Off by default: they tell a contact when you are at the
# keyboard, and each one is a proof-of-work-stamped envelope (short-lived, so cheap;
# at most one per contact every few seconds, only the latest state is sent).
# chat_states = false
# XEP-0333 read markers ("displayed") sent to and shown from accepted contacts
# (--markers). Off by default: a contact learns when you read their message.
# markers = false
# Your availability (online, away, extended away, do not disturb, offline) sent to
# and shown from accepted contacts who turned it on too (--presence). Off by
# default: a contact learns when your client is connected. Off, contacts show online.
# presence = false
# Your picture (set in your client, at most 128 KiB, PNG or JPEG) sent to your
# accepted contacts when you set or change it and when you accept one; each
# sending is a few proof-of-work-stamped envelopes. Contacts' pictures are shown either way.
# share_avatar = true
# XEP-0363 file upload (pictures, files) on 127.0.0.1: the largest file, in MiB
# (at most 64; 0: no upload service), and the local port of its HTTP listener (0: a
# free one at each start; set one so file links in history still open after a restart).
# max_upload_mb = 16
# upload_port = 0

[web]
# The local web page (identities, invitations, contacts, node health), 127.0.0.1 only.
# port = {DEFAULT_WEB_PORT}
# open the web page in a browser when the daemon starts
# open_browser = false

[p2p]
# The P2P node. listen is the address it binds; use "127.0.0.1" to stay local.
# listen = "0.0.0.0"
# port = {DEFAULT_P2P_PORT}
# host:port others can reach this node at (--advertise): announced to your contacts
# as your direct-delivery endpoint and written into your invitations. "" = none:
# messages then reach you by gossip only. Never 0.0.0.0; with Tor the onion is used.
# announce = ""
# bootstrap peers, as "host:port"
# peers = []
# "memory" keeps nothing but keys on disk; "sqlite" keeps envelopes and history
# storage = "memory"
# base proof-of-work difficulty in leading zero bits
# difficulty = {DEFAULT_BASE_BITS}
# End-to-end sessions (docs/sessions.md): messages to a contact whose keys are known go
# in a double ratchet started by a post-quantum hybrid handshake, so a key taken later
# opens none of them. false (--no-sessions): every message goes the version-1 way,
# sealed to the contact's weekly prekey; only for talking to
# contacts whose daemon is too old to open version 2.
# sessions = true
# memory the network may make the node use, in MiB: stored envelopes, queued
# outbound bytes, requests in flight (the program itself comes on top)
# memory_budget_mb = {DEFAULT_MEMORY_BUDGET_MB}
# the most stored envelopes may take, in MiB; 0 = the memory budget's share
# (a RAM store never takes more than that share, whatever this says)
# store_mb = 0
# dial private, link-local and loopback addresses that other peers tell of: true,
# false, or "auto": only in the ranges this node listens on, announces or has peers
# configured in (a node on 127.0.0.1 dials loopback peers; one on 0.0.0.0 none)
# dial_private = "auto"
# the shards this node stores and relays, as "value/depth" prefixes of the 16-bit shard
# key (docs/sharding.md): "0/0" is every shard; ["0/1"] and ["1/1"] are the two halves.
# A node carrying part of the network refuses envelopes outside it; what it sends to
# other shards it hands to their carriers. Everything sent to its identities lies in
# their shards, their contacts' announcements (prekeys, endpoints) too: contacts' daemons
# seal them to each contact in its shard. Outside its part it misses the public room and
# what contacts on earlier builds send (docs/sharding.md).
# shards = ["0/0"]
# or let the node choose: carry what fits in this many MB stored a day (0: the shards
# above, fixed). It starts with every shard, goes one bit deeper — half the shards, those
# of its own identities — while it takes in more than this, and back up when a quarter
# of it would do; never narrower than a part 16 known nodes carry (docs/sharding.md).
# carry_mb_day = 0
# A light node (--light) keeps no envelopes for others: it asks the full nodes it links
# to for the shards of its identities (and of the public room) by prefix, never by tag,
# downloads every envelope under them and keeps only its own. It saves the store and the
# relaying; it costs a download of its whole shard, and a full node learns the prefix.
# light = false
# ask at least this deep (1 to 16 bits; 0: the depth each full node carries). Deeper
# downloads less and hides the identities among fewer people (docs/sharding.md).
# light_depth = 0

[tor]
# Send every peer connection through Tor and publish an onion service.
# enabled = false
# socks = "127.0.0.1:9050"
# control = "127.0.0.1:9051"

[component]
# The gateway as an XEP-0114 component of your own Prosody or ejabberd under a
# domain such as "p2p.example.org" ("" = off). The secret is the server's
# component_secret: set it here, in secret_file, or in PARANOIM_COMPONENT_SECRET.
# domain = ""
# server = "127.0.0.1:5347"
# secret = ""
# secret_file = ""
# users of these domains may register ([] = the component domain's parent)
# user_domains = []

[tray]
# Show a tray icon (needs: pip install paranoim[tray]).
# enabled = false
"""


class ConfigError(UserError):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: str = ""
    log_level: str = "info"
    xmpp_port: int = DEFAULT_XMPP_PORT
    xmpp_domain: str = "localhost"
    xmpp_listener: bool = True
    chat_states: bool = False
    markers: bool = False
    presence: bool = False
    share_avatar: bool = True
    max_upload_mb: int = 16
    upload_port: int = 0
    web_port: int = DEFAULT_WEB_PORT
    open_browser: bool = False
    p2p_listen: str = "0.0.0.0"  # noqa: S104 - a P2P node has to be reachable
    p2p_port: int = DEFAULT_P2P_PORT
    announce: str = ""
    peers: tuple[str, ...] = ()
    storage: str = "memory"
    difficulty: int = DEFAULT_BASE_BITS
    sessions: bool = True
    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB
    store_mb: int = 0  # 0: the memory budget's share
    dial_private: bool | None = None  # None: the ranges the node itself is in
    shards: tuple[Prefix, ...] = EVERYTHING  # the shard prefixes the node carries
    carry_mb_day: int = 0  # > 0: the node chooses its shards to take in about this a day
    light: bool = False  # keep no envelopes for others; ask full nodes by shard prefix
    light_depth: int = 0  # a light node's least depth (0: each full node's own)
    tor: bool = False
    tor_socks: str = "127.0.0.1:9050"
    tor_control: str = "127.0.0.1:9051"
    component_domain: str = ""
    component_server: str = "127.0.0.1:5347"
    component_secret: str = field(default="", repr=False)
    component_secret_file: str = ""
    component_user_domains: tuple[str, ...] = ()
    tray: bool = False
    source: str = field(default="", compare=False)  # the file it came from

    def override(self, **values: Any) -> Config:
        """A copy with the given fields replaced, each checked like a file key."""
        checked = {}
        for name, value in values.items():
            if value is None:
                continue
            option = _OPTIONS.get(name, "--" + name.replace("_", "-"))
            checked[name] = _KEYS[_FIELD_TO_KEY[name]][1](option, value)
        return replace(self, **checked)


# --- checkers: (name, value) -> value, or ConfigError naming the key --------------


def _what(key: str) -> str:
    return f"option {key}" if key.startswith("--") else f"config key '{key}'"


def _port(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        raise ConfigError(f"{_what(key)} must be a port number from 1 to 65535 "
                          f"(0 picks a free one); got {v!r}")
    return v


def _string(key: str, v: object) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{_what(key)} must be a string in quotes; got {v!r}")
    return v


def _bool(key: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{_what(key)} must be true or false; got {v!r}")
    return v


def _auto_bool(key: str, v: object) -> bool | None:
    if v == "auto":
        return None
    if not isinstance(v, bool):
        raise ConfigError(f'{_what(key)} must be true, false or "auto"; got {v!r}')
    return v


def _choice(options: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(key: str, v: object) -> str:
        if not isinstance(v, str) or v.lower() not in options:
            raise ConfigError(f"{_what(key)} must be one of {', '.join(options)}; "
                              f"got {v!r}")
        return v.lower()
    return check


def host_port(key: str, v: object) -> str:
    """'host:port' with a non-empty host and a port in range."""
    if not isinstance(v, str):
        raise ConfigError(f"{_what(key)} must be host:port in quotes, such as "
                          f"\"192.0.2.7:{DEFAULT_P2P_PORT}\"; got {v!r}")
    try:
        return parse_peer(v)
    except BadPeerError as exc:
        raise ConfigError(f"{_what(key)}: {exc}") from None


def _advertise(key: str, v: object) -> str:
    """host:port that others can dial: not a wildcard address, not a URL."""
    if v == "":
        return ""
    hp = host_port(key, v)
    if "/" in hp or "@" in hp:
        raise ConfigError(f"{_what(key)} must be host:port, not a URL, such as "
                          f"192.0.2.7:{DEFAULT_P2P_PORT}; got {v!r}")
    bracketed = hp.rpartition(":")[0]
    host = bracketed.strip("[]").lower()
    if ":" in host and not bracketed.startswith("["):
        raise ConfigError(f"{_what(key)}: write an IPv6 address in brackets, such as "
                          f"[2001:db8::7]:{DEFAULT_P2P_PORT}; got {v!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ConfigError(f"{_what(key)} must be host:port with a host name or IP "
                              f"address, such as 192.0.2.7:{DEFAULT_P2P_PORT}; got {v!r}") from None
    else:
        if ip.is_unspecified or ip.is_multicast:
            raise ConfigError(
                f"{_what(key)}: {host} is not an address others can reach; give this "
                f"machine's public address or name, such as 192.0.2.7:{DEFAULT_P2P_PORT}")
    return hp


def _peers(key: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple):
        raise ConfigError(f"{_what(key)} must be a list of \"host:port\" strings")
    return tuple(host_port(key, p) for p in v)


def _shards(key: str, v: object) -> tuple[Prefix, ...]:
    if not isinstance(v, list | tuple) or not v or not all(isinstance(p, str) for p in v):
        raise ConfigError(f'{_what(key)} must be a list of "value/depth" prefixes, such as '
                          '["0/0"]')
    try:
        return canonical(parse_prefix(p) for p in v)
    except (ValueError, LocalProtocolError) as exc:
        raise ConfigError(f"{_what(key)}: {exc}") from None


def _bits(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not MIN_BITS <= v <= MAX_BITS:
        raise ConfigError(f"{_what(key)} must be a whole number of bits from "
                          f"{MIN_BITS} to {MAX_BITS}; got {v!r}")
    return v


def _mebibytes(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not MIN_MEMORY_MB <= v <= 1 << 20:
        raise ConfigError(f"{_what(key)} must be a whole number of MiB from "
                          f"{MIN_MEMORY_MB} to {1 << 20}; got {v!r}")
    return v


def _upload_mebibytes(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 64:
        raise ConfigError(f"{_what(key)} must be a whole number of MiB from 0 (no uploads) "
                          f"to 64; got {v!r}")
    return v


def _store_mebibytes(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1 << 20:
        raise ConfigError(f"{_what(key)} must be a whole number of MiB from 0 (the memory "
                          f"budget's share) to {1 << 20}; got {v!r}")
    return v


def _megabytes_a_day(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1 << 30:
        raise ConfigError(f"{_what(key)} must be a whole number of MB a day, 0 to keep the "
                          f"shards given in 'p2p.shards'; got {v!r}")
    return v


def _depth(key: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= KEY_BITS:
        raise ConfigError(f"{_what(key)} must be a number of bits from 0 to {KEY_BITS}; "
                          f"got {v!r}")
    return v


def _domain(key: str, v: object) -> str:
    s = _string(key, v).strip().lower()
    if not s or len(s) > 253 or any(c in s for c in "@/ \t"):
        raise ConfigError(f"{_what(key)} must be a plain domain name such as localhost")
    return s


def _optional_domain(key: str, v: object) -> str:
    return "" if v == "" else _domain(key, v)


def _domains(key: str, v: object) -> tuple[str, ...]:
    if not isinstance(v, list | tuple):
        raise ConfigError(f"{_what(key)} must be a list of domain names, such as [\"example.org\"]")
    return tuple(_domain(key, d) for d in v)


# file key -> (Config field, checker)
_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "data_dir": ("data_dir", _string),
    "log_level": ("log_level", _choice(LOG_LEVELS)),
    "xmpp.port": ("xmpp_port", _port),
    "xmpp.domain": ("xmpp_domain", _domain),
    "xmpp.listener": ("xmpp_listener", _bool),
    "xmpp.chat_states": ("chat_states", _bool),
    "xmpp.markers": ("markers", _bool),
    "xmpp.presence": ("presence", _bool),
    "xmpp.share_avatar": ("share_avatar", _bool),
    "xmpp.max_upload_mb": ("max_upload_mb", _upload_mebibytes),
    "xmpp.upload_port": ("upload_port", _port),
    "web.port": ("web_port", _port),
    "web.open_browser": ("open_browser", _bool),
    "p2p.listen": ("p2p_listen", _string),
    "p2p.port": ("p2p_port", _port),
    "p2p.announce": ("announce", _advertise),
    "p2p.peers": ("peers", _peers),
    "p2p.storage": ("storage", _choice(STORAGES)),
    "p2p.difficulty": ("difficulty", _bits),
    "p2p.sessions": ("sessions", _bool),
    "p2p.memory_budget_mb": ("memory_budget_mb", _mebibytes),
    "p2p.store_mb": ("store_mb", _store_mebibytes),
    "p2p.dial_private": ("dial_private", _auto_bool),
    "p2p.shards": ("shards", _shards),
    "p2p.carry_mb_day": ("carry_mb_day", _megabytes_a_day),
    "p2p.light": ("light", _bool),
    "p2p.light_depth": ("light_depth", _depth),
    "tor.enabled": ("tor", _bool),
    "tor.socks": ("tor_socks", host_port),
    "tor.control": ("tor_control", host_port),
    "component.domain": ("component_domain", _optional_domain),
    "component.server": ("component_server", host_port),
    "component.secret": ("component_secret", _string),
    "component.secret_file": ("component_secret_file", _string),
    "component.user_domains": ("component_user_domains", _domains),
    "tray.enabled": ("tray", _bool),
}
# command-line options whose name is not the field's
_OPTIONS = {"peers": "--peer", "announce": "--advertise", "xmpp_listener": "--no-xmpp-listener"}
_FIELD_TO_KEY = {f: k for k, (f, _) in _KEYS.items()}
_SECTIONS = {k.split(".")[0] for k in _KEYS if "." in k}


def parse(text: str, source: str = "config") -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for top, value in doc.items():
        if top in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{top}' must be a [{top}] section")
            items = [(f"{top}.{k}", v) for k, v in value.items()]
        else:
            items = [(top, value)]
        for key, v in items:
            if key not in _KEYS:
                known = ", ".join(sorted(_KEYS))
                raise ConfigError(f"{source}: unknown {_what(key)} (known keys: {known})")
            name, check = _KEYS[key]
            values[name] = check(key, v)
    if values.get("carry_mb_day") and "shards" in values:
        raise ConfigError(f"{source}: 'p2p.shards' fixes the shards and 'p2p.carry_mb_day' "
                          "lets the node choose them; keep one")
    return Config(source=source, **values)


def component_secret(cfg: Config, env: Mapping[str, str] | None = None) -> str:
    """The component secret, from exactly one of PARANOIM_COMPONENT_SECRET,
    ``component.secret_file`` and ``component.secret`` (a ConfigError otherwise)."""
    env = os.environ if env is None else env
    sources = [(f"the variable {ENV_COMPONENT_SECRET}", env.get(ENV_COMPONENT_SECRET, "")),
               ("config key 'component.secret_file'", cfg.component_secret_file),
               ("config key 'component.secret'", cfg.component_secret)]
    given = [(name, value) for name, value in sources if value]
    if not given:
        raise ConfigError(
            "the XEP-0114 component needs the server's component_secret: put it in a file "
            "named by --component-secret-file (or 'component.secret_file'), or in "
            f"{ENV_COMPONENT_SECRET}")
    if len(given) > 1:
        raise ConfigError("the component secret is given twice (" + " and ".join(
            name for name, _ in given) + "); keep one")
    name, value = given[0]
    if name.endswith("'component.secret_file'"):
        path = Path(value).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the component secret file {path} named by "
                              f"{name}: {getattr(exc, 'strerror', None) or exc}") from None
    if not value.strip() or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"the component secret from {name} is empty or spans lines")
    return value.strip()


def check_run(cfg: Config, env: Mapping[str, str] | None = None) -> None:
    """What ``paranoim run`` needs beyond each key being valid on its own."""
    if not cfg.xmpp_listener and not cfg.component_domain:
        raise ConfigError("with the XMPP listener off (--no-xmpp-listener or "
                          "'xmpp.listener' = false) no Jabber client could connect: configure "
                          "the component (--component-domain) or turn the listener on")
    if cfg.component_domain:
        component_secret(cfg, env)
    if cfg.light and (cfg.carry_mb_day or cfg.shards != EVERYTHING):
        raise ConfigError("a light node (--light or 'p2p.light') carries no shards for others: "
                          "leave 'p2p.shards' and 'p2p.carry_mb_day' unset, or run a full node")


def load(path: Path, *, create: bool = True) -> Config:
    """The config in ``path``; written with commented defaults first if absent."""
    if not path.exists():
        if not create:
            raise ConfigError(f"there is no config file {path}")
        write_default(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    return parse(text, str(path))


def write_default(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(DEFAULT_TEXT)
    os.replace(tmp, path)


def known_keys() -> list[str]:
    return sorted(_KEYS)
