"""Vanity addresses: estimate, start, watch progress live (server-sent events), cancel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bridge.api import VanityJob, VanityProgress
from webui import fmt
from webui.keys import STREAMS
from webui.pages import back_to, render, require_session, see_other
from webui.views.common import field, nickname, service

EVENT_INTERVAL = 0.4  # seconds between progress events
MAX_LISTED_JOBS = 20


def progress_data(p: VanityProgress) -> dict[str, Any]:
    """One progress event: raw numbers for the bar, preformatted text for people."""
    expected = max(float(p.expected_attempts), 1.0)
    attempts = int(p.attempts)
    rate = float(p.rate)
    remaining = max(expected - attempts, 0.0) / rate if rate > 0 else math.inf
    state = _state(p)
    return {
        "state": state,
        "attempts": attempts,
        "expected": expected,
        "fraction": 1.0 if state == "done" else min(attempts / expected, 1.0),
        "rate": rate,
        "elapsed": float(p.elapsed),
        "address": p.address,
        "error": p.error,
        "attempts_text": fmt.count(attempts),
        "expected_text": fmt.count(expected),
        "rate_text": f"{fmt.count(rate)} keys/s",
        "elapsed_text": fmt.duration(p.elapsed),
        "remaining_text": _remaining_text(state, rate, attempts, expected, remaining),
        "percent_text": f"{min(attempts / expected, 1.0) * 100:.0f}%",
    }


def _state(p: VanityProgress) -> str:
    # a found address wins over a late cancel; the service also reports a cancel as an error
    if p.address:
        return "done"
    if p.cancelled:
        return "cancelled"
    if p.error:
        return "error"
    return "done" if p.done else "running"


def _remaining_text(
    state: str, rate: float, attempts: int, expected: float, remaining: float
) -> str:
    if state != "running":
        return "—"
    if rate <= 0:
        return "measuring…"
    if attempts >= expected:
        return "past the average; any moment now"
    return f"about {fmt.duration(remaining)}"


def _job(request: web.Request) -> VanityJob:
    job = service(request).vanity_job(request.match_info["job_id"])
    if job is None:
        raise web.HTTPNotFound()
    return job


async def vanity_page(request: web.Request) -> web.StreamResponse:
    svc = service(request)
    prefix = request.query.get("prefix", "").strip().lower()[:64]
    nick = request.query.get("nick", "").strip()[:64]
    estimate = None
    if prefix:
        back_to(request, "/vanity")
        attempts, seconds = svc.vanity_estimate(prefix)
        estimate = {
            "attempts": fmt.count(attempts),
            "seconds": fmt.duration(seconds),
            "long": seconds > 3600,
        }
    jobs = []
    for job in reversed(svc.vanity_jobs()[-MAX_LISTED_JOBS:]):
        jobs.append({"job": job, "p": progress_data(job.progress())})
    return render(
        request,
        "vanity.html",
        {"prefix": prefix, "nick": nick, "estimate": estimate, "jobs": jobs},
    )


async def vanity_start(request: web.Request) -> web.StreamResponse:
    back_to(request, "/vanity")
    prefix = (await field(request, "prefix", max_len=64)).lower()
    nick = await nickname(request)
    back_to(request, f"/vanity?prefix={quote(prefix)}&nick={quote(nick)}")
    job = service(request).start_vanity(prefix, nick)
    raise see_other(f"/vanity/jobs/{quote(job.id)}")


async def vanity_job_page(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    return render(request, "vanity_job.html", {"job": job, "p": progress_data(job.progress())})


async def vanity_cancel(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    back_to(request, f"/vanity/jobs/{quote(job.id)}")
    job.cancel()
    require_session(request).flash("ok", f"The search for “{job.prefix}” was cancelled.")
    raise see_other(f"/vanity/jobs/{quote(job.id)}")


async def vanity_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``progress`` event per interval until the job ends."""
    job = _job(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        request.app[STREAMS].add(task)
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            data = progress_data(job.progress())
            await response.write(f"event: progress\ndata: {json.dumps(data)}\n\n".encode())
            if data["state"] != "running":
                break
            await asyncio.sleep(EVENT_INTERVAL)
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page was closed, or the app is shutting down
    finally:
        if task is not None:
            request.app[STREAMS].discard(task)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
