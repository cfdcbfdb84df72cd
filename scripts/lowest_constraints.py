"""Print pip constraints that pin every base dependency to the lowest version pyproject claims.

``make test-lowest`` installs with them, so that each ``>=`` bound in pyproject.toml is a
version the tests have run against, not a guess.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def lowest(requirements: list[str]) -> list[str]:
    """``name>=X`` → ``name==X`` for each requirement; one without a lower bound is an error."""
    pins = []
    for req in requirements:
        spec = req.split(";")[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([^,\s]+).*", spec)
        if not match:
            raise SystemExit(f"{PYPROJECT}: {req!r} has no lower bound (>=) to test")
        pins.append(f"{match.group(1)}=={match.group(3)}")
    return pins


if __name__ == "__main__":
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    sys.stdout.write("".join(f"{pin}\n" for pin in lowest(deps)))
