"""The direct-delivery client: /get_domain_pk → /pow → solve → /exchange_keys → /msg.

Every failure becomes one DirectDeliveryError whose message says where and why,
so the caller (the service) can decide to fall back to gossip. The proof of work
is never solved on the event loop: a worker pool's ``solve_pow`` or a thread.
Responses are read with a size bound, as requests are on the server side.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bridge.core import kkv, kkv_records, pow
from bridge.core.errors import ParanoimError, UserError
from bridge.core.identity import Identity
from bridge.net.tor import CONNECT_ERRORS, describe_connect_error

Solver = Callable[[bytes, int], Awaitable[int]]

RESPONSE_LIMIT = 16 * 1024
DEFAULT_MAX_BITS = 28  # the most work a contact's endpoint may ask of us (~3 s on one core)
DEFAULT_TIMEOUT = 120.0  # Tor circuits to an onion service take seconds each


class DirectDeliveryError(UserError):
    """Direct delivery failed; the message says at which step. Sending through the
    network (gossip) still works."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def solve_in_thread(digest: bytes, bits: int) -> int:
    """The fallback solver when no worker pool is given: a thread, off the event loop."""

    def run() -> int:
        start = secrets.randbelow(1 << 40)
        while True:
            nonce = pow.solve_range(digest, bits, start, 1 << 20)
            if nonce is not None:
                return nonce
            start += 1 << 20

    return await asyncio.to_thread(run)


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    step: str,
    payload: dict[str, Any] | None = None,
) -> bytes:
    try:
        async with session.request(method, url, json=payload, allow_redirects=False) as resp:
            body = await resp.content.read(RESPONSE_LIMIT + 1)
            if len(body) > RESPONSE_LIMIT:
                raise DirectDeliveryError(
                    f"{step}: the endpoint's answer is too large", status=resp.status
                )
            if resp.status != 200:
                raise DirectDeliveryError(
                    f"{step}: the endpoint refused (HTTP {resp.status}): {_error_text(body)}",
                    status=resp.status,
                )
            return body
    except DirectDeliveryError:
        raise
    except CONNECT_ERRORS as exc:
        raise DirectDeliveryError(f"{step}: {describe_connect_error(exc)}") from exc


def _error_text(body: bytes) -> str:
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        return str(obj["error"])[:300]
    return "no reason given"


async def deliver_direct(
    session: aiohttp.ClientSession,
    endpoint_url: str,
    envelope_raw: bytes,
    identity: Identity | None = None,
    *,
    solver: Solver | None = None,
    tor: bool = False,
    max_bits: int = DEFAULT_MAX_BITS,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> None:
    """Deliver one sealed envelope to a contact's kkv-style endpoint, or raise
    DirectDeliveryError.

    ``session`` carries the transport: with Tor on, build it on
    ``bridge.net.tor.socks_connector`` and pass ``tor=True`` (``.onion`` endpoints
    are refused otherwise). ``identity`` signs the transport requests; None (the
    default) uses a throwaway key so the endpoint's operator cannot link
    deliveries to each other — the envelope carries its own signed sender inside.
    ``solver`` is e.g. ``WorkerPool.solve_pow``; by default a thread solves.
    """
    try:
        base = kkv.parse_endpoint(endpoint_url, tor=tor)
    except kkv_records.BadEndpointError as exc:
        raise DirectDeliveryError(str(exc)) from exc
    signer = identity or Identity.from_seed(secrets.token_bytes(32))
    solve = solver or solve_in_thread
    try:
        async with asyncio.timeout(timeout):
            await _run(session, base, envelope_raw, signer, solve, max_bits, clock)
    except TimeoutError as exc:
        raise DirectDeliveryError(
            f"direct delivery to {base} took longer than {timeout:g} s"
        ) from exc


async def _run(
    session: aiohttp.ClientSession,
    base: str,
    envelope: bytes,
    signer: Identity,
    solve: Solver,
    max_bits: int,
    clock: Callable[[], float],
) -> None:
    step = "reading the endpoint's key"
    try:
        body = await _call(session, "GET", base + "/get_domain_pk", step)
        obj = kkv_records.parse_json_object(body, {"domain_pk": str})
        domain_pk = kkv_records.unb64(obj["domain_pk"], 32, "domain_pk")

        step = "asking for a challenge"
        body = await _call(
            session, "POST", base + "/pow", step, {"client_pk": kkv_records.b64(signer.public)}
        )
        resp, challenge = kkv_records.ChallengeResponse.from_json(body)
        kkv.check_challenge(
            resp,
            challenge,
            domain_pk=domain_pk,
            client_pk=signer.public,
            now=int(clock()),
            max_bits=max_bits,
        )

        step = "solving the challenge"
        nonce = await solve(challenge.digest, challenge.bits)

        step = "exchanging keys"
        x_secret = secrets.token_bytes(32)
        req = kkv.make_exchange(resp, nonce, signer.secret_key, x_secret)
        body = await _call(session, "POST", base + "/exchange_keys", step, req.to_json())
        offer = kkv_records.SessionOffer.from_json(body)

        step = "sending the message"
        msg = kkv.make_message(
            offer,
            domain_pk=domain_pk,
            client_pk=signer.public,
            client_sk=signer.secret_key,
            client_x25519_secret=x_secret,
            envelope=envelope,
            now=int(clock()),
        )
        await _call(session, "POST", base + "/msg", step, msg.to_json())
    except DirectDeliveryError as exc:
        raise DirectDeliveryError(
            f"direct delivery to {base} failed while {exc}", status=exc.status
        ) from exc
    except ParanoimError as exc:
        raise DirectDeliveryError(
            f"direct delivery to {base} failed while {step}: the "
            f"endpoint's answer was not acceptable ({exc})"
        ) from exc
