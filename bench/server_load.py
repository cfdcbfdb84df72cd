"""The server under hostile load: /api/health latency while 16 clients send worst-case PNGs,
and the server's memory after 1,000 requests with distinct bad parameters.

Run: ``python bench/server_load.py [--clients 16] [--seconds 20]``. Starts the app on
deep_mnist in a child process (uvicorn with ``cnnscope.server.serving.uvicorn_options``),
then prints:

* health: p50/p95/max of ``GET /api/health`` polled every 50 ms during the load;
* the answers to the load: how many 200, 400 (refused from the PNG header) and 503
  (the worker pool's queue full, with Retry-After);
* RSS of the server before and after each 1,000 requests with distinct bad parameters
  (unknown layers, stages, units, models): flat means no cache grows with them.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
from PIL import Image


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int) -> None:
    import uvicorn

    import cnnscope
    from cnnscope.server.app import ServedModel, create_app
    from cnnscope.server.serving import uvicorn_options

    model, meta = cnnscope.load_model("deep_mnist")
    app = create_app([ServedModel("deep_mnist", model, meta, "shipped")])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", **uvicorn_options())


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def worst_cases() -> list[bytes]:
    """Request bodies: the largest PNG the server decodes (1024² of noise: nothing for
    zlib to save, 1.4 MB as base64) and a 4096² PNG (refused from its header)."""
    noise = np.random.default_rng(0).integers(0, 256, (1024, 1024), dtype=np.uint8)
    bodies = []
    for image in (noise, np.zeros((4096, 4096), np.uint8)):
        png = base64.b64encode(_png(image)).decode()
        bodies.append(json.dumps({"png": png, "explain": "gradcam"}).encode())
    return bodies


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body, headers)
    r = conn.getresponse()
    r.read()
    return r.status


def load(port: int, clients: int, seconds: float) -> None:
    bodies = worst_cases()
    print(f"bodies: {[len(b) for b in bodies]} bytes (decoded 1024², header-refused 4096²)")
    stop = time.monotonic() + seconds
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = i
        while time.monotonic() < stop:
            try:
                status = _request(conn, "POST", "/api/predict", bodies[n % 2])
            except (OSError, http.client.HTTPException):
                status = -1  # connection dropped
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            n += 1
            with lock:
                statuses[status] += 1

    health: list[float] = []

    def poll() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            assert _request(conn, "GET", "/api/health", None) == 200
            health.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=poll))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p50, p95 = np.percentile(health, [50, 95])
    print(
        f"health under {clients} worst-case clients for {seconds:.0f} s: "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(health):.1f} ms ({len(health)} polls)"
    )
    print(f"load answers: {dict(sorted(statuses.items()))} (503 count: {statuses[503]})")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bad_parameters(port: int, pid: int, rounds: int = 3, per_round: int = 1000) -> None:
    """Distinct bad values each time: an unbounded cache keyed by them would grow."""
    pixels = json.dumps([0.0] * 784)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    print(f"RSS before: {_rss_mb(pid):.0f} MB")
    codes: Counter[int] = Counter()
    for r in range(rounds):
        for i in range(per_round):
            k = r * per_round + i
            which = k % 4
            if which == 0:
                body = f'{{"pixels": {pixels}, "method": "saliency", "layer": "x{k}"}}'
                codes[_request(conn, "POST", "/api/explain", body.encode())] += 1
            elif which == 1:
                codes[_request(conn, "GET", f"/api/top-examples/deep_mnist/s{k}/0", None)] += 1
            elif which == 2:
                codes[_request(conn, "GET", f"/api/features/deep_mnist/conv{k}", None)] += 1
            else:
                body = f'{{"pixels": {pixels}, "model": "m{k}"}}'
                codes[_request(conn, "POST", "/api/predict", body.encode())] += 1
        print(f"RSS after {(r + 1) * per_round:,} bad requests: {_rss_mb(pid):.0f} MB")
    print(f"bad-parameter answers: {dict(sorted(codes.items()))}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16, help="concurrent PNG senders (16)")
    p.add_argument("--seconds", type=float, default=20, help="load duration (20)")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = _port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _request(http.client.HTTPConnection("127.0.0.1", port), "GET", "/api/health", None)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        load(port, args.clients, args.seconds)
        bad_parameters(port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
