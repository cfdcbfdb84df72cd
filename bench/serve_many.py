"""A classroom of drawers: /api/predict under 64 clients that each draw continuously.

Run: ``python bench/serve_many.py [--clients 64] [--seconds 20] [--workers 1 2]
[--baseline /path/to/other/checkout]``. For each server (``cnnscope serve --workers N``,
and the same command from another checkout given by ``--baseline``, e.g. the main
branch) it runs one client, then ``--clients`` clients, each with one request in flight
and the next sent as soon as the answer arrives, for ``--seconds`` each. The requests are
what the page sends while someone draws: ``{"png": <280×280 canvas data URL>}`` of MNIST
test digits redrawn along their centre line with a round pen, answered with every stage
(gzip, as a browser asks); the PNG is the page's one-channel kind (``--png rgba``: the
browser's own RGBA export, which the page sent before). Prints, per server and load:
answers, errors (anything but 200, or a dropped connection), requests/s, p50/p95/p99
round trip, how the connections were shared between the worker processes (Linux), the
server's CPU time per answer (its processes' user + system time: the
figure that stays comparable on a busy machine), and the ratios against the 1-client run
and against the baseline server in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

# The repository root: test-only helpers (tests/support) are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.drawers import Load, closed_loop, drawings
from bench.server import ROOT, Server, serve
from tests.support.sockets import holders, workers_of


def settle(port: int) -> None:
    """Wait for the work a server starts on its own (the top-examples indexes, built or
    read from the disk cache) to end in every process: not a cost of predictions."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", "/api/health")
    models = json.loads(c.getresponse().read())["models"]
    for model in models:
        for _ in range(4):  # new connections: each worker process gets some
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            c.request("GET", f"/api/top-examples/{model}/logits/0?k=1")
            c.getresponse().read()


def _split(server: Server) -> str:
    """How the open connections are shared between the server's worker processes, e.g.
    ``32 / 32`` (Linux; empty elsewhere, or with one process)."""
    try:
        pids = workers_of(server.process.pid)
        held = holders(server.port, pids)
    except OSError:
        return ""
    if len(pids) < 2:
        return ""
    counts = Counter(held.values())
    return " / ".join(str(counts.get(pid, 0)) for pid in pids)


def measure(label: str, args: list[str], checkout: Path, opts, bodies) -> list[Load]:
    with serve(*args, checkout=checkout) as server:
        port = server.port
        settle(port)
        closed_loop(port, bodies, 4, 2.0)  # warm-up: every worker process has answered
        conn, health = http.client.HTTPConnection("127.0.0.1", port, timeout=30), []
        for _ in range(50):
            t0 = time.perf_counter()
            conn.request("GET", "/api/health")
            conn.getresponse().read()
            health.append((time.perf_counter() - t0) * 1000)
        print(f"{label:<28} /api/health round trip p50 {np.median(health):.1f} ms", flush=True)
        loads = []
        split: list[str] = []
        for n in (1, opts.clients):
            cpu0 = server.cpu_s()
            if n > 1:
                threading.Timer(2.0, lambda: split.append(_split(server))).start()
            loads.append(closed_loop(port, bodies, n, opts.seconds))
            loads[-1].cpu_ms = (server.cpu_s() - cpu0) * 1000 / max(loads[-1].ok, 1)
        if split and split[0]:
            print(f"{label:<28} connections per worker process: {split[0]}", flush=True)
    for load in loads:
        print(
            f"{label:<28} {load.clients:>3} client{'s' if load.clients > 1 else ' '}: "
            f"{load.ok:>6} ok {load.errors:>4} errors  {load.rps:6.0f} req/s  "
            f"p50 {load.pct(50):6.1f}  p95 {load.pct(95):6.1f}  p99 {load.pct(99):6.1f} ms  "
            f"CPU/answer: server {load.cpu_ms:4.2f} ms, client {load.client_cpu_ms:4.2f} ms"
            f"{'  errors by status ' + str(load.statuses) if load.errors else ''}",
            flush=True,
        )
    one, many = loads
    print(
        f"{'':<28} {opts.clients} vs 1 client: {many.rps / one.rps:.2f}× the req/s, "
        f"p95 {many.pct(95) / one.pct(95):.1f}× the 1-client p95",
        flush=True,
    )
    return loads


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--clients", type=int, default=64, help="concurrent drawers")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each load")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="serve --workers")
    p.add_argument("--baseline", type=Path, help="another checkout to serve as the reference")
    p.add_argument("--threads", type=int, default=1, help="serve --threads")
    p.add_argument(
        "--png",
        choices=["page", "pillow", "rgba"],
        default="page",
        help="the drawings' PNG: the page's one-channel kind, Pillow's grey, or RGBA "
        "(the browser's toDataURL, which the page sent before)",
    )
    args = p.parse_args()
    # A SIGTERM (timeout, CI) unwinds through the finally clauses that stop the servers:
    # worker processes outlive a supervisor killed outright.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}", flush=True)
    bodies = drawings(200, form=args.png)
    size = np.mean([len(b) for b in bodies]) / 1000
    print(f"request: a 280×280 canvas PNG ({args.png}), {size:.1f} kB")
    serve_args = ["--threads", str(args.threads)]
    results: dict[str, list[Load]] = {}
    if args.baseline is not None:
        base = args.baseline.resolve()
        results["baseline"] = measure(f"baseline ({base.name})", serve_args, base, args, bodies)
    for n in args.workers:
        results[f"w{n}"] = measure(
            f"this checkout, --workers {n}", [*serve_args, "--workers", str(n)], ROOT, args, bodies
        )
    if "baseline" in results:
        _, ref = results["baseline"]
        for n in args.workers:
            _, many = results[f"w{n}"]
            print(
                f"--workers {n} vs baseline at {args.clients} clients: "
                f"{many.rps / ref.rps:.2f}× the req/s, p95 {many.pct(95):.0f} vs "
                f"{ref.pct(95):.0f} ms ({ref.pct(95) / many.pct(95):.1f}× lower)"
            )


if __name__ == "__main__":
    main()
