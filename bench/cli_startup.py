"""How fast ``cnnscope --help`` answers (goal: ≤ 0.5 s), and what it imports on the way.

Run: ``python bench/cli_startup.py``. Prints the median wall time of ``cnnscope --help``
and ``python -m cnnscope --help`` over 10 runs each (after one warm-up run, so the figure
is a warm file cache), the interpreter's own start-up for comparison, and the heavy
modules (torch, numpy, ...) that ``--help`` imported. With ``PYTHONPATH=src`` it measures
this checkout's code.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10
GOAL_S = 0.5
HEAVY = ("torch", "numpy", "captum", "matplotlib", "PIL", "fastapi", "uvicorn", "safetensors")


def median_seconds(argv: list[str]) -> float:
    subprocess.run(argv, check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def heavy_imports() -> list[str]:
    """The heavy modules loaded by ``cnnscope --help``, in a fresh interpreter."""
    code = (
        "import contextlib, io, sys\n"
        "from cnnscope.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.split()


def main() -> None:
    script = Path(sys.executable).with_name("cnnscope")
    command = [str(script)] if script.exists() else [shutil.which("cnnscope") or "cnnscope"]
    figures = {
        "cnnscope --help": median_seconds([*command, "--help"]),
        "python -m cnnscope --help": median_seconds([sys.executable, "-m", "cnnscope", "--help"]),
        "python -c pass (the floor)": median_seconds([sys.executable, "-c", "pass"]),
    }
    for what, seconds in figures.items():
        verdict = "" if "floor" in what else ("  ok" if seconds <= GOAL_S else "  OVER the goal")
        print(f"{what:28s} median of {RUNS}: {seconds:.3f} s{verdict}")
    heavy = heavy_imports()
    print(f"heavy modules imported by --help: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
