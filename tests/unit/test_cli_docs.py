"""The documents a person or packager reads agree with the program: every exit status
the command can end with is in the user guide's table, and every runtime dependency
in pyproject.toml is in the packaging guide."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bridge import exits

ROOT = Path(__file__).resolve().parents[2]


def test_every_exit_status_is_in_the_user_guide() -> None:
    guide = (ROOT / "docs" / "user-guide.md").read_text()
    table = guide[guide.index("| status | meaning |"):]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    codes = {v for k, v in vars(exits).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert codes >= {0, 1, 2, 3, 4, 5, 6, 70, 130, 141}
    assert codes <= documented, sorted(codes - documented)


def test_every_runtime_dependency_is_in_the_packaging_guide() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in deps}
    doc = (ROOT / "packaging" / "PACKAGING.md").read_text()
    section = doc[doc.index("## Dependencies"):].split("\n## ", 1)[0].lower()
    missing = {n for n in names if n not in section and n.replace("-", "") not in section}
    assert not missing, sorted(missing)
