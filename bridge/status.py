"""What a running daemon says about itself: the status document (the runtime
file and ``paranoim status`` read it) and the lines ``paranoim run`` prints once
it is ready. Both are read from the started parts, so a part that does not run
(no listener in component mode, no onion without Tor) is never mentioned.

Neither holds a secret: what ``paranoim run`` prints ends up in journald under
``paranoim service install``. The web UI's address is shown without its access
token; ``paranoim open`` asks the daemon for the link that carries it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from bridge import __version__

if TYPE_CHECKING:
    from bridge.daemon import Daemon


def status(d: Daemon) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "pid": os.getpid(), "version": __version__, "data_dir": str(d.data_dir),
        "started": d.started_at or time.time(), "ports": d.ports,
        "web_url": d.web_address,
        "xmpp_domain": d.cfg.xmpp_domain,
        "fingerprint": d.xmpp.fingerprint if d.xmpp is not None else "",
        "paused": d.network_paused, "notes": list(d.notes), "direct": direct_status(d)}
    if d.component is not None:
        doc["component"] = d.component.status()
    if d.node is not None:
        doc["shards"] = [str(p) for p in d.node.config.shards]
    if d.carrying is not None:
        c, now = d.carrying, d.carrying.clock()
        doc["carrying"] = {"depth": c.depth, "budget_mb_day": d.cfg.carry_mb_day,
                           "taken_mb_day": round(c.intake.per_day(now) / 1e6, 1),
                           "measured_s": int(c.intake.measured_for(now))}
    return doc


def direct_status(d: Daemon) -> dict[str, Any]:
    """Direct delivery at a glance: what is announced, sent, fallen back, received."""
    stats = d.service.outbox.direct_stats if d.service is not None else {}
    known = 0
    if d.keystore is not None and d.keystore.doc is not None:
        known = sum(1 for rec in d.keystore.doc.identities for c in rec.contacts if c.endpoint)
    inbox = d.inbox
    return {"endpoint": d.endpoint, "sent": stats.get("direct", 0),
            "fallback": stats.get("fallback", 0),
            "received": inbox.received if inbox is not None else 0,
            "refused": inbox.refused if inbox is not None else 0,
            "inbox": len(inbox.kkv.inbox) if inbox is not None else 0,
            "contacts_with_endpoint": known}


def ready_lines(d: Daemon) -> list[str]:
    cfg, ports = d.cfg, d.ports
    lines = [f"ParanoIM {__version__} (pid {os.getpid()}), data in {d.data_dir}"]
    if d.xmpp is not None:
        lines.append(f"  XMPP   127.0.0.1:{ports['xmpp']}  domain {cfg.xmpp_domain}, "
                     f"STARTTLS, certificate SHA-256 {d.xmpp.fingerprint or '?'}")
    if cfg.chat_states:
        lines.append("  Chat states on: accepted contacts see when you type")
    if cfg.markers:
        lines.append("  Read markers on: accepted contacts see when you read")
    if cfg.presence:
        lines.append("  Presence on: accepted contacts who turned it on see when you are online")
    if not cfg.sessions:
        lines.append("  Sessions off: messages go sealed to weekly prekeys (no forward "
                     "secrecy per message, not post-quantum)")
    listen = "127.0.0.1" if cfg.tor else cfg.p2p_listen
    lines.append(f"  P2P    {listen}:{ports.get('p2p', cfg.p2p_port)}  "
                 f"storage {cfg.storage}, Tor {'on' if cfg.tor else 'off'}, "
                 f"difficulty {cfg.difficulty} bits")
    if cfg.carry_mb_day:
        lines.append(f"  Shards chosen by intake: every shard while it takes in at most "
                     f"{cfg.carry_mb_day} MB a day, else its identities' part")
    if cfg.light:
        lines.append("  Light node: keeps only your envelopes, fetches your shard from full "
                     "nodes (a full node learns the shard, not which envelopes are yours)")
    if d.onion:
        lines.append(f"  Onion  {d.onion}")
    if d.endpoint:
        lines.append(f"  Direct {d.endpoint}  announced to contacts for direct delivery")
    else:
        lines.append("  Direct not announced: others cannot reach this node (give "
                     "--advertise HOST:PORT or use --tor); messages arrive by gossip")
    if "kkv_local" in ports:
        lines.append(f"  Inbox  127.0.0.1:{ports['kkv_local']}  direct-delivery read "
                     "endpoints, this machine only")
    if d.component is not None:
        c = d.component.component
        lines.append(f"  Component {c.domain} on {cfg.component_server}  users of "
                     f"{', '.join(c.server_domains)} register with it")
    if d.web_address:
        lines.append(f"  Web UI {d.web_address}  open it with `paranoim open` (or --open, "
                     "or the tray icon)")
    lines += [f"  note: {n}" for n in d.notes]
    lines.append("Ready. Press Ctrl-C to stop.")
    return lines
