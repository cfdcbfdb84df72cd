"""Latency and size of /api/predict over loopback HTTP, load behaviour, redraw time.

Run: ``python bench/predict_latency.py`` (starts ``cnnscope serve`` on a free port).
Prints, for 500 sequential requests each (100 for integrated gradients): the server-side
time (the ``Server-Timing`` header: validation, handler, rendering, gzip) and the client's
round trip, p50/p99, and response bytes on the wire (gzip) and raw; for pixels, PNG, the
2017 demo's ``POST /predict``, live attributions and ``/api/explain``; then 32
concurrent clients for 30 s (throughput, p99, errors); then, in Chromium, the time to
redraw every map of the page.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import io
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

# The repository root: test-only helpers (tests/support) are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.server import serve
from tests.support.chromium import launch
from tests.support.rerender import rerender

from cnnscope.data import load_mnist


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float, int, float]:
        t0 = time.perf_counter()
        self.conn.request(
            "POST", path, body, {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
        )
        r = self.conn.getresponse()
        raw = r.read()
        ms = (time.perf_counter() - t0) * 1000
        data = gzip.decompress(raw) if r.getheader("Content-Encoding") == "gzip" else raw
        server = float((r.getheader("Server-Timing") or "app;dur=nan").split("dur=")[1])
        return r.status, data, ms, len(raw), server


def _bodies(n: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    d = load_mnist()
    rng = np.random.default_rng(0)
    pixels, pngs, compat = [], [], []
    for i in range(n):
        x = d.test_images[i].numpy()
        pixels.append(json.dumps({"pixels": (x.flatten() / 255).round(4).tolist()}).encode())
        compat.append(json.dumps(x.flatten().tolist()).encode())
        canvas = (rerender(x / 255.0, rng) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="PNG")
        pngs.append(json.dumps({"png": base64.b64encode(buf.getvalue()).decode()}).encode())
    return pixels, pngs, compat


def _sequential(port: int, path: str, bodies: list[bytes], label: str) -> None:
    c = Client(port)
    for b in bodies[:20]:  # warm-up
        c.post(path, b)
    rtt, server, wire, raw = [], [], [], []
    for b in bodies:
        status, data, ms, n, server_ms = c.post(path, b)
        assert status == 200, data[:200]
        rtt.append(ms)
        server.append(server_ms)
        wire.append(n)
        raw.append(len(data))
    print(
        f"{label:<22} n={len(bodies)}  server p50 {_pct(server, 50):.2f} ms "
        f"p99 {_pct(server, 99):.2f} ms  round trip p50 {_pct(rtt, 50):.2f} ms "
        f"p99 {_pct(rtt, 99):.2f} ms  response {statistics.mean(wire) / 1000:.1f} kB gzip, "
        f"{statistics.mean(raw) / 1000:.1f} kB raw",
        flush=True,
    )


def _load(port: int, bodies: list[bytes], clients: int, seconds: float) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        c = Client(port)
        i = k
        while time.monotonic() < stop:
            try:
                status, _, ms, _, _ = c.post("/api/predict", bodies[i % len(bodies)])
                with lock:
                    if status == 200:
                        latencies.append(ms)
                    else:
                        errors.append(str(status))
            except Exception as e:
                with lock:
                    errors.append(repr(e))
                c = Client(port)
            i += clients

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    print(
        f"load: {clients} clients × {seconds:.0f} s: {len(latencies)} ok, {len(errors)} errors, "
        f"{len(latencies) / elapsed:.0f} req/s, p50 {_pct(latencies, 50):.1f} ms, "
        f"p99 {_pct(latencies, 99):.1f} ms",
        flush=True,
    )


def _redraw(url: str, repeats: int = 50) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.click("#random")
        page.wait_for_function("window.cnnscope.renders > 0")
        for view in ("compact", "pipeline"):
            page.select_option("#view", view)
            times = page.evaluate(
                """(n) => { const t = []; for (let i = 0; i < n; i++) {
                    window.cnnscope.render(); t.push(window.cnnscope.lastRenderMs); }
                    t.sort((a, b) => a - b); return t; }""",
                repeats,
            )
            print(
                f"chromium redraw of every map ({view} view, per-map scales): "
                f"median {times[len(times) // 2]:.1f} ms, max {times[-1]:.1f} ms over {repeats}"
            )
        b.close()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=500, help="sequential requests per kind")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--no-browser", action="store_true")
    args = p.parse_args()

    with serve() as server:
        port = server.port
        print(server.banner, flush=True)
        print(f"cpu cores: {os.cpu_count()}", flush=True)
        pixels, pngs, compat = _bodies(args.n)
        _sequential(port, "/api/predict", pixels, "predict (28×28 pixels)")
        _sequential(port, "/api/predict", pngs, "predict (280×280 PNG)")
        _sequential(port, "/predict", compat, "compat /predict")
        with_cam = [b[:-1] + b', "explain": "gradcam"}' for b in pixels]
        _sequential(port, "/api/predict", with_cam, "predict + Grad-CAM")
        with_sal = [b[:-1] + b', "explain": "saliency"}' for b in pixels]
        _sequential(port, "/api/predict", with_sal, "predict + saliency")
        ig = [b[:-1] + b', "method": "ig"}' for b in pixels[:100]]
        _sequential(port, "/api/explain", ig, "explain ig (32 steps)")
        _load(port, pixels, args.clients, args.seconds)
        if not args.no_browser:
            _redraw(server.url)


if __name__ == "__main__":
    main()
