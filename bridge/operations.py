"""What the ``paranoim`` commands can do, and the one table of their verbs.

``Operations`` is written once over the service and returns plain JSON-able
dicts, so a command gives the same answer whether the daemon runs (the verbs
then travel over the control channel, ``bridge.control``) or the key file is
opened directly (``bridge.backend``). ``VERBS`` names each verb's method, the
HTTP method and path it travels by, its arguments, and whether it needs a
running daemon; the server and the client both read it, so they cannot disagree.

``Naming`` says which JIDs a person's client shows: ``name@localhost`` and
``<address>@p2p.localhost`` on the embedded listener; in component mode (no
listener) the user's own account linked with the gateway, and contacts under
the component's domain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.config import Config
from bridge.core.errors import UserError
from bridge.events import ContactInfo, IdentityInfo
from bridge.xmpp.jids import Domains
from bridge.xmpp.links import Links

if TYPE_CHECKING:
    from bridge.service import Service

Json = dict[str, Any]


class Naming:
    """The JIDs a Jabber client sees for identities and contacts, as configured."""

    def __init__(self, cfg: Config | None = None, data_dir: Path | None = None) -> None:
        cfg = cfg or Config()
        self.data_dir = data_dir
        if cfg.xmpp_listener or not cfg.component_domain:
            self.domains = Domains(cfg.xmpp_domain)
            self.gateway = ""
        else:
            self.domains = Domains(cfg.component_domain, component=True)
            self.gateway = self.domains.server

    def user(self, info: IdentityInfo) -> str:
        """The identity's JID; in component mode the account linked to it ("" if none)."""
        if not self.gateway:
            return self.domains.user(info.username)
        if self.data_dir is None:
            return ""
        return Links(self.data_dir).jid_for(info.address) or ""

    def contact(self, address: str) -> str:
        return self.domains.contact(address)


def identity_json(info: IdentityInfo, naming: Naming) -> Json:
    return {"address": info.address, "nick": info.nick, "username": info.username,
            "jid": naming.user(info), "gateway": naming.gateway,
            "password": info.xmpp_password, "fingerprint": info.fingerprint}


def contact_json(info: ContactInfo, naming: Naming) -> Json:
    return {"owner": info.owner, "address": info.address, "petname": info.petname,
            "state": str(info.state), "jid": naming.contact(info.address),
            "fingerprint": info.fingerprint}


class Operations:
    """The commands' verbs over one service (the daemon's, or a short-lived one)."""

    def __init__(self, service: Service, *, naming: Naming | None = None,
                 status: Callable[[], Json] | None = None,
                 stop: Callable[[], None] | None = None,
                 web_link: Callable[[], str] | None = None) -> None:
        self.service = service
        self.naming = naming or Naming()
        self._status = status or (lambda: {})
        self._stop = stop
        self._web_link = web_link

    def pick(self, who: str) -> IdentityInfo:
        """An identity by address, username, nickname or address prefix; "" = the first."""
        idents: list[IdentityInfo] = self.service.identities()
        if not idents:
            raise UserError("there is no identity yet: create one with `paranoim id new NICK`")
        if not who:
            return idents[0]
        w = who.strip().lower()
        tests: list[Callable[[IdentityInfo], bool]] = [
            lambda i: i.address == w, lambda i: i.username == w,
            lambda i: i.nick.lower() == w, lambda i: i.address.startswith(w)]
        for test in tests:
            found = [i for i in idents if test(i)]
            if len(found) == 1:
                return found[0]
        names = ", ".join(i.nick for i in idents)
        raise UserError(f"no single identity matches '{who}'; the identities are: {names}")

    def status(self) -> Json:
        h = self.service.health()
        return {**self._status(), "identities": len(self.service.identities()),
                "peers": h.peers, "stored_envelopes": h.stored_envelopes,
                "stored_bytes": h.stored_bytes, "difficulty_bits": h.difficulty_bits,
                "storage": h.storage, "tor": h.tor, "recent_errors": h.recent_errors}

    def identities(self) -> list[Json]:
        return [identity_json(i, self.naming) for i in self.service.identities()]

    async def create_identity(self, nick: str) -> Json:
        return identity_json(await self.service.create_identity(nick), self.naming)

    def start_vanity(self, nick: str, prefix: str) -> Json:
        attempts, seconds = self.service.vanity_estimate(prefix)
        job = self.service.start_vanity(prefix, nick)
        return {"job": job.id, "prefix": job.prefix, "expected_attempts": attempts,
                "expected_seconds": seconds}

    def vanity(self, job_id: str) -> Json:
        job = self.service.vanity_job(job_id)
        if job is None:
            raise UserError(f"there is no vanity search {job_id}")
        p = job.progress()
        out: Json = {"attempts": p.attempts, "rate": p.rate, "elapsed": p.elapsed,
                     "expected_attempts": p.expected_attempts, "done": p.done,
                     "cancelled": p.cancelled, "error": p.error, "identity": None}
        if p.done and p.address:
            out["identity"] = identity_json(self.service.identity(p.address), self.naming)
        return out

    def cancel_vanity(self, job_id: str) -> Json:
        job = self.service.vanity_job(job_id)
        if job is not None:
            job.cancel()
        return {}

    def invite(self, who: str) -> Json:
        ident = self.pick(who)
        return {"identity": identity_json(ident, self.naming),
                "link": self.service.invite_link(ident.address)}

    def add_contact(self, who: str, link: str, name: str) -> Json:
        ident = self.pick(who)
        return contact_json(self.service.add_contact(ident.address, link, name), self.naming)

    def contacts(self, who: str) -> list[Json]:
        ident = self.pick(who)
        return [contact_json(c, self.naming) for c in self.service.contacts(ident.address)]

    def peers(self) -> list[Json]:
        return [dict(p) for p in self.service.health().peers]

    def add_peer(self, peer: str) -> Json:
        self.service.add_peer(peer)  # the one peer parser says what is wrong with it
        return {}

    def remove_peer(self, peer: str) -> Json:
        self.service.remove_peer(peer)
        return {}

    async def set_passphrase(self, passphrase: str) -> Json:
        # Argon2id takes a second or two: off the event loop. "" stores the keys unencrypted.
        await asyncio.to_thread(self.service.set_passphrase, passphrase or None)
        return {"encrypted": bool(passphrase)}

    def web_link(self) -> Json:
        """The link that opens the web UI with its access token (``paranoim open``)."""
        link = self._web_link() if self._web_link is not None else ""
        if not link:
            raise UserError("this daemon has no web UI")
        return {"link": link}

    def stop(self) -> Json:
        if self._stop is None:
            raise UserError("this daemon cannot be stopped from here")
        asyncio.get_running_loop().call_soon(self._stop)
        return {}


# --- the verbs: the one table both ends of the control channel read ---------------


@dataclass(frozen=True, slots=True)
class Verb:
    method: str  # GET, POST or DELETE
    path: str  # under the control prefix; "{name}" takes that argument
    run: Callable[..., Json | list[Json] | Awaitable[Json | list[Json]]]
    args: tuple[str, ...] = ()  # string arguments (POST: the JSON body; else the query)
    daemon_only: bool = False  # needs the running daemon (the network, or stopping it)


VERBS: dict[str, Verb] = {
    "status": Verb("GET", "/status", Operations.status, daemon_only=True),
    "identities": Verb("GET", "/identities", Operations.identities),
    "create_identity": Verb("POST", "/identities", Operations.create_identity, ("nick",)),
    "start_vanity": Verb("POST", "/vanity", Operations.start_vanity, ("nick", "prefix")),
    "vanity": Verb("GET", "/vanity/{job_id}", Operations.vanity, ("job_id",)),
    "cancel_vanity": Verb("DELETE", "/vanity/{job_id}", Operations.cancel_vanity,
                          ("job_id",)),
    "invite": Verb("GET", "/invite", Operations.invite, ("who",)),
    "contacts": Verb("GET", "/contacts", Operations.contacts, ("who",)),
    "add_contact": Verb("POST", "/contacts", Operations.add_contact, ("who", "link", "name")),
    "peers": Verb("GET", "/peers", Operations.peers, daemon_only=True),
    "add_peer": Verb("POST", "/peers", Operations.add_peer, ("peer",), daemon_only=True),
    "remove_peer": Verb("DELETE", "/peers", Operations.remove_peer, ("peer",),
                        daemon_only=True),
    "set_passphrase": Verb("POST", "/passphrase", Operations.set_passphrase, ("passphrase",)),
    "web_link": Verb("GET", "/web-link", Operations.web_link, daemon_only=True),
    "stop": Verb("POST", "/stop", Operations.stop, daemon_only=True),
}


async def perform(ops: Operations, verb: str, args: dict[str, str]) -> Any:
    """Run ``verb`` on ``ops`` with ``args``: strings, only its own; a missing one is ""."""
    v = VERBS[verb]
    unknown = set(args) - set(v.args)
    if unknown:
        raise UserError(f"'{verb}' takes no argument {', '.join(sorted(unknown))}")
    result = v.run(ops, **{name: str(args.get(name, "")) for name in v.args})
    if asyncio.iscoroutine(result):
        result = await result
    return result
