"""Number, size and duration formatting for people (templates and progress events)."""

from __future__ import annotations

import math
import time


def count(n: float) -> str:
    """12 345 678 with thin spaces; large values as 1.2 million / 3.4 billion."""
    if not math.isfinite(n):
        return "∞"
    if n >= 1e12:
        return f"{n / 1e12:.1f} trillion"
    if n >= 1e9:
        return f"{n / 1e9:.1f} billion"
    if n >= 1e7:
        return f"{n / 1e6:.1f} million"
    return f"{round(n):,}".replace(",", "\u202f")


def size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def duration(seconds: float) -> str:
    """A short human duration: "under a second", "42 s", "3 min 5 s", "2 h 10 min", "3 days"."""
    if not math.isfinite(seconds):
        return "forever"
    s = max(0.0, seconds)
    if s < 1:
        return "under a second"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    if s < 86400 * 365:
        return f"{s / 86400:.0f} days"
    return f"{s / (86400 * 365):.0f} years"


def timestamp(unix: int) -> str:
    """A local date and time, minutes precision."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))
