"""What a spec quotes, and whether its vectors file holds it: every known-answer
test checks that its spec cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any

HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{16,}(?![0-9A-Za-z])")
ADDRESS = re.compile(r"(?<![0-9a-z])[a-z2-7]{56}(?![0-9a-z])")
FINGERPRINT = re.compile(r"(?<![0-9a-z-])[a-z2-7]{4}(?:-[a-z2-7]{4}){3}(?![0-9a-z-])")


def strings(node: Any) -> list[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []
