"""A ``cnnscope serve`` subprocess for a benchmark: started on a free port, stopped after.

Shared by every script in ``bench/`` that talks to a real server over HTTP. ``serve`` is
run from a given checkout (``--baseline`` runs another one), with its own package first
on ``PYTHONPATH``; the server counts as up once it answers ``/api/health``, or, for a
cold-start figure, once it prints the line it prints when its socket listens.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ROOT", "Server", "cpu_s", "serve"]

ROOT = Path(__file__).resolve().parents[1]  # this checkout


@dataclass
class Server:
    """A running ``cnnscope serve``: its supervisor process and where it listens."""

    process: subprocess.Popen[str]
    port: int
    banner: str  # the line serve printed once its socket listened

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server's processes (workers included)."""
        return cpu_s(self.process.pid)


def cpu_s(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its descendants (Linux /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def _health(port: int) -> bool:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/api/health")
        return c.getresponse().status == 200
    except OSError:
        return False
    finally:
        c.close()


@contextmanager
def serve(
    *args: str,
    checkout: Path = ROOT,
    env: dict[str, str] | None = None,
    ready: Literal["health", "listening"] = "health",
    stop: signal.Signals = signal.SIGTERM,
    timeout_s: float = 120.0,
) -> Iterator[Server]:
    """``cnnscope serve ARGS --port 0`` from ``checkout``, yielded once ``ready``.

    Parameters
    ----------
    args
        ``serve``'s flags, e.g. ``"--workers", "2"``.
    checkout
        The repository whose ``src/`` is served (default: this one).
    env
        Variables added to this process's environment (``XDG_CACHE_HOME`` for a cache of
        its own).
    ready
        ``"health"``: once ``/api/health`` answers 200 (the app runs); ``"listening"``:
        once serve says its socket listens (a cold start's clock starts there).
    stop
        The signal that ends it: SIGTERM, or SIGINT for a graceful stop (training runs
        save their step). Never SIGKILL: worker processes would outlive their supervisor.
    """
    full_env = {**os.environ, **(env or {})}
    # The checkout's own package first; what the caller's PYTHONPATH adds after it.
    path = (str(checkout / "src"), full_env.get("PYTHONPATH"))
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    cmd = [sys.executable, "-m", "cnnscope", "serve", *args, "--port", "0"]
    process = subprocess.Popen(cmd, env=full_env, cwd=checkout, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().strip()  # "… serving M at http://127.0.0.1:PORT/"
        # The rest is drained, so that a chatty server never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        match = re.search(r":(\d+)/", banner)
        if match is None:
            raise SystemExit(f"server did not start: {' '.join(cmd)} printed {banner!r}")
        server = Server(process, int(match.group(1)), banner)
        deadline = time.monotonic() + timeout_s
        while ready == "health" and not _health(server.port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"server did not answer /api/health: {' '.join(cmd)}")
            time.sleep(0.2)
        yield server
    finally:
        process.send_signal(stop)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
