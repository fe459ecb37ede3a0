"""Human formatting of counts, sizes and durations, and the vanity progress event."""

from __future__ import annotations

import math
from dataclasses import dataclass

from webui import fmt
from webui.views.vanity import progress_data


def test_count() -> None:
    assert fmt.count(0) == "0"
    assert fmt.count(1234567) == "1\u202f234\u202f567"
    assert fmt.count(33_554_432) == "33.6 million"
    assert fmt.count(1.1e9) == "1.1 billion"
    assert fmt.count(math.inf) == "∞"


def test_size() -> None:
    assert fmt.size(512) == "512 bytes"
    assert fmt.size(86016) == "84.0 KB"
    assert fmt.size(5 * 1024**3) == "5.0 GB"


def test_duration() -> None:
    assert fmt.duration(0.2) == "under a second"
    assert fmt.duration(42) == "42 s"
    assert fmt.duration(185) == "3 min 5 s"
    assert fmt.duration(7800) == "2 h 10 min"
    assert fmt.duration(86400 * 3) == "3 days"
    assert fmt.duration(86400 * 365 * 40) == "40 years"
    assert fmt.duration(math.inf) == "forever"


@dataclass
class P:
    attempts: int = 0
    rate: float = 0.0
    elapsed: float = 0.0
    expected_attempts: float = 1024.0
    done: bool = False
    cancelled: bool = False
    error: str = ""
    address: str = ""


def test_progress_event() -> None:
    running = progress_data(P(attempts=512, rate=256.0, elapsed=2.0))
    assert running["state"] == "running"
    assert running["fraction"] == 0.5 and running["percent_text"] == "50%"
    assert running["remaining_text"] == "about 2 s"
    assert running["rate_text"] == "256 keys/s"
    past = progress_data(P(attempts=4096, rate=100.0))
    assert past["fraction"] == 1.0 and past["remaining_text"] == "past the average; any moment now"
    assert progress_data(P(rate=0.0))["remaining_text"] == "measuring…"
    assert progress_data(P(done=True, address="ab"))["state"] == "done"
    assert progress_data(P(cancelled=True))["state"] == "cancelled"
    assert progress_data(P(error="boom", done=True))["state"] == "error"
