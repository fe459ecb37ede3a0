"""docs/vectors/invitations.json against the code, and docs/invitations.md against it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.core import crypto
from bridge.core.errors import BadInviteError
from bridge.core.invite import parse_invite
from bridge.store import transfer
from tests.vectors import invitations, quoted

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads(invitations.OUT.read_text("utf-8"))


def test_the_file_is_what_the_code_makes() -> None:
    assert invitations.build() == VECTORS, (
        "run python tests/vectors/invitations.py if the change is an intended one "
        "(and bump the link or file version)")


@pytest.mark.parametrize("case", VECTORS["links"], ids=lambda c: str(c["length"]))
def test_each_link_reads_back_as_a_second_implementation_would(case: dict[str, Any]) -> None:
    inv = parse_invite(case["link"])
    assert (inv.public.hex(), inv.nick, list(inv.peers)) == (
        VECTORS["bob_public"], case["nick"], case["peers"])
    digest = crypto.derive(crypto.CTX_INVITE_CHECKSUM, case["checksum_input"].encode(), 5)
    assert digest.hex() == case["checksum_derive_5"]
    rest = case["link"][len(case["checksum_input"]):]
    assert case["link"].startswith(case["checksum_input"]) and rest[0] in "?&"
    assert rest[1:] == "c=" + invitations.checksum_text(case["checksum_derive_5"])
    with pytest.raises(BadInviteError, match="checksum"):
        parse_invite(case["link"][:-1] + ("a" if case["link"][-1] != "a" else "b"))


def test_the_export_file_opens_with_its_passphrase() -> None:
    v = VECTORS["export"]
    seed, nick = transfer.import_identity(bytes.fromhex(v["file"]), v["passphrase"])
    assert (seed.hex(), nick) == (VECTORS["bob_seed"], "Bob")


_HEX = quoted.HEX
_LINK = re.compile(r"paranoim:1/\S+")


def test_every_value_quoted_in_the_spec_is_in_the_file() -> None:
    text = (ROOT / "docs" / "invitations.md").read_text("utf-8")
    haystack = json.dumps(VECTORS)
    quoted = _HEX.findall(text) + _LINK.findall(text)
    assert len(quoted) >= 8
    # the export file is quoted over three lines
    joined = "".join(re.findall(r"^(?:file  |      )([0-9a-f]+)$", text, re.M))
    assert joined == VECTORS["export"]["file"]
    missing = [q for q in quoted if q not in haystack and q not in VECTORS["export"]["file"]]
    assert not missing, f"invitations.md quotes values not in invitations.json: {missing}"
