"""The SASL exchange on one c2s connection: elements in, steps out.

Owns what happens between ``<auth/>`` and ``<success/>``: the chosen
mechanism, the user name as a localpart, the login throttle and lockouts,
the authorization identity check and the count of failed attempts. The
mechanisms themselves are ``sasl.py``; writing, waiting and changing phase
are the connection's (``stream.py``), which acts on the step returned:

- ``Reply``: write it and go on (a challenge, or a failure the client may retry);
- ``LoggedIn``: write the ``<success/>``; the client opens a new stream;
- ``LoginFailed``: write the failure after ``delay``; ``fatal`` ends the stream.

A wrong password and a locked account both answer ``not-authorized``.
"""

from __future__ import annotations

import base64
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bridge.events import IdentityInfo
from bridge.xmpp import stanzas as st
from bridge.xmpp.sasl import (
    MECHANISMS,
    SaslError,
    ScramCredentials,
    ScramServer,
    b64decode,
    parse_plain,
)

if TYPE_CHECKING:
    from bridge.xmpp.jids import Domains
    from bridge.xmpp.throttle import LoginThrottle

_SASL = f"{{{st.SASL_NS}}}"


class LoginHub(Protocol):
    """What a login needs from the server: accounts, credentials, the throttle."""

    domains: Domains
    throttle: LoginThrottle
    scram_secret: bytes
    max_auth_failures: int

    def find_user(self, name: str) -> IdentityInfo | None: ...
    def check_password(self, username: str, password: str) -> IdentityInfo | None: ...
    def scram_credentials(self, mechanism: str, username: str) -> ScramCredentials | None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes


@dataclass(frozen=True, slots=True)
class LoggedIn:
    identity: IdentityInfo
    data: bytes  # the <success/>


@dataclass(frozen=True, slots=True)
class LoginFailed:
    user: str
    delay: float  # seconds the throttle wants the answer held back
    data: bytes  # the <failure/>
    fatal: bool  # the connection has used up its attempts


def failure(err: SaslError) -> bytes:
    el = st.element(_SASL + "failure")
    ET.SubElement(el, _SASL + err.condition)
    if err.text:
        ET.SubElement(el, _SASL + "text").text = err.text
    return st.serialize(el)


class Login:
    def __init__(self, hub: LoginHub) -> None:
        self.hub = hub
        self._scram: ScramServer | None = None
        self._failures = 0

    def receive(self, el: ET.Element, source: str) -> Reply | LoggedIn | LoginFailed:
        """One ``<auth/>``, ``<response/>`` or ``<abort/>`` from the client at ``source``."""
        try:
            if el.tag == _SASL + "abort":
                self._scram = None
                raise SaslError("aborted")
            if el.tag == _SASL + "auth":
                return self._auth(el, source)
            return self._response(el, source)
        except SaslError as err:
            self._scram = None
            return Reply(failure(err))

    def _auth(self, el: ET.Element, source: str) -> Reply | LoggedIn | LoginFailed:
        mechanism = el.get("mechanism", "")
        if mechanism not in MECHANISMS:
            raise SaslError("invalid-mechanism")
        text = (el.text or "").strip()
        initial = b"" if text in ("", "=") else b64decode(text)
        if mechanism == "PLAIN":
            authzid, user, password = parse_plain(initial)
            user = self._localpart(user)
            if self.hub.throttle.locked_for(user):
                return self._locked(user)
            identity = self.hub.check_password(user, password)
            return self._login(source, user, identity, authzid, b"")
        if not initial:
            raise SaslError("malformed-request", "SCRAM needs an initial response")
        self._scram = ScramServer(
            mechanism,
            lambda name: self.hub.scram_credentials(mechanism, self._localpart(name)),
            secrets.token_urlsafe(18),
            self.hub.scram_secret,
        )
        challenge = self._scram.first(initial)
        user = self._localpart(self._scram.username)
        if self.hub.throttle.locked_for(user):
            self._scram = None
            return self._locked(user)
        return Reply(
            st.serialize(st.element(_SASL + "challenge", base64.b64encode(challenge).decode()))
        )

    def _response(self, el: ET.Element, source: str) -> Reply | LoggedIn | LoginFailed:
        scram, self._scram = self._scram, None
        if scram is None:
            raise SaslError("malformed-request", "no SASL exchange in progress")
        user = self._localpart(scram.username)
        try:
            final = scram.final(b64decode((el.text or "").strip()))
        except SaslError as err:
            if err.condition != "not-authorized":
                raise
            return self._login(source, user, None, scram.authzid, b"")
        return self._login(source, user, self.hub.find_user(user), scram.authzid, final)

    def _localpart(self, name: str) -> str:
        suffix = "@" + self.hub.domains.server
        return name[: -len(suffix)] if name.lower().endswith(suffix) else name

    def _login(
        self, source: str, user: str, identity: IdentityInfo | None, authzid: str, extra: bytes
    ) -> LoggedIn | LoginFailed:
        throttle = self.hub.throttle
        if identity is None:
            return self._failed(user, throttle.failure(source, user))
        if authzid and authzid.lower() not in {
            identity.username.lower(),
            self.hub.domains.user(identity.username).lower(),
        }:
            raise SaslError("invalid-authzid")
        throttle.success(source, user)
        self._failures = 0
        success = st.element(_SASL + "success", base64.b64encode(extra).decode() if extra else "")
        return LoggedIn(identity, st.serialize(success))

    def _locked(self, user: str) -> LoginFailed:
        minutes = max(1, round(self.hub.throttle.locked_for(user) / 60))
        return self._failed(
            user,
            0.0,
            f"too many failed logins for this account; try again in {minutes} min",
        )

    def _failed(self, user: str, delay: float, text: str = "") -> LoginFailed:
        self._failures += 1
        data = failure(SaslError("not-authorized", text))
        return LoginFailed(user, delay, data, self._failures >= self.hub.max_auth_failures)
