"""Drawing while a run trains: /api/predict latency idle and while the Train tab trains.

Run: ``python bench/train_while_drawing.py`` (starts ``cnnscope serve`` on a free port with
a fresh runs folder). Sends ``--requests`` drawings one after another (PNG, every stage,
as the page does while you draw) with nothing else running; then starts a run from the API
(``--model``, one torch thread in its own process) and, once it trains, sends the same
drawings again; stops the run. Prints the round trip's p50/p95/p99 side by side and the
ratio of the busy p95 to the idle p95 (the goal: ≤ 3).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.drawers import drawings, sequential
from bench.server import serve


class _Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.conn.request(method, path, body, {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, r.read()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300, help="drawings per phase")
    p.add_argument("--model", default="deep_mnist", help="architecture the run trains")
    args = p.parse_args()

    bodies = drawings(args.requests, model=None)
    runs_dir = tempfile.mkdtemp(prefix="cnnscope-bench-runs-")
    # SIGINT to stop: the run saves its step and ends with the server.
    with serve("--runs-dir", runs_dir, stop=signal.SIGINT) as server:
        port = server.port
        client = _Client(port)
        sequential(port, bodies[:20])  # warm-up: first forward passes, allocator
        idle = sequential(port, bodies)

        body = json.dumps({"model": args.model, "steps": 20_000, "seed": 0}).encode()
        status, data = client.call("POST", "/api/runs", body)
        assert status == 202, data
        run_id = json.loads(data)["id"]
        t0 = time.monotonic()
        while True:  # until it trains (not while it loads the data)
            _, data = client.call("GET", f"/api/runs/{run_id}")
            detail = json.loads(data)
            if detail["step"] >= 10 or time.monotonic() - t0 > 60:
                break
            time.sleep(0.5)
        step0 = detail["step"]
        busy = sequential(port, bodies)
        _, data = client.call("GET", f"/api/runs/{run_id}")
        steps = json.loads(data)["step"] - step0
        client.call("POST", f"/api/runs/{run_id}/stop")

    def row(name: str, ms: list[float]) -> str:
        p50, p95, p99 = (np.percentile(ms, q) for q in (50, 95, 99))
        return f"{name:<28} {p50:8.1f} {p95:8.1f} {p99:8.1f}"

    print(f"/api/predict (PNG, every stage), {args.requests} drawings one after another, ms:")
    print(f"{'':<28} {'p50':>8} {'p95':>8} {'p99':>8}")
    print(row("idle", idle))
    print(row(f"while {args.model} trains", busy))
    ratio = np.percentile(busy, 95) / np.percentile(idle, 95)
    print(f"busy p95 / idle p95: {ratio:.2f} (goal ≤ 3); the run trained ≥ {steps} steps meanwhile")


if __name__ == "__main__":
    main()
