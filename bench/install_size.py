"""Installed size of cnnscope: the base install and the full one, beside a CPU torch.

Run: ``python bench/install_size.py [EXTRA ...]`` (needs the package index; ~5 minutes).
Builds the wheel, then for each of ``cnnscope`` and ``cnnscope[all]`` (or
``cnnscope[EXTRA]`` for each EXTRA named) makes a fresh venv, installs the
CPU torch first (``-c constraints.txt``, as the Makefile does), then the wheel, and prints
what the wheel's install added to site-packages (cnnscope with its dependencies, torch and
what torch pulls left out) and torch's own size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_bytes(folder: Path) -> int:
    """Apparent size of every file under ``folder`` (symlinks not followed)."""
    return sum(
        (Path(root) / name).lstat().st_size for root, _, names in os.walk(folder) for name in names
    )


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def pip(venv: Path, *args: str) -> None:
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args],
        check=True,
        cwd=REPO,
    )


def main(extras: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="cnnscope-size-") as tmp:
        dist = Path(tmp) / "dist"
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, REPO],
            check=True,
            capture_output=True,
        )
        wheel = next(dist.glob("cnnscope-*.whl"))
        print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB", flush=True)
        for extra in extras:
            venv = Path(tmp) / f"venv{extra.strip('[]')}"
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            sp = site_packages(venv)
            empty = tree_bytes(sp)  # pip and setuptools of a fresh venv
            pip(venv, "-c", "constraints.txt", "torch")
            with_torch = tree_bytes(sp)
            torch_only = tree_bytes(sp / "torch")
            pip(venv, "-c", "constraints.txt", f"{wheel}{extra}")
            added = tree_bytes(sp) - with_torch
            print(
                f"cnnscope{extra}: {added / 1e6:.0f} MB beside torch "
                f"(torch + its dependencies: {(with_torch - empty) / 1e6:.0f} MB, "
                f"of which torch/ {torch_only / 1e6:.0f} MB)",
                flush=True,
            )


if __name__ == "__main__":
    main([f"[{e}]" for e in sys.argv[1:]] or ["", "[all]"])
