"""Evaluation and attribution speed of the shipped deep_mnist on this machine.

Run: ``python bench/eval_speed.py [--baseline DIR] [--starts N]``. Prints the time to
predict the 10,000 test images (uncached, median of 3), the cached report time, the first
``/api/evaluation/deep_mnist`` answer of a freshly started server whose disk cache holds
the evaluation (this checkout's ``serve`` and, with ``--baseline``, another checkout's,
alternating, N starts each), and each attribution method's latency for one image (median
and p99 over 50 calls) at 1 and 2 torch threads.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# The repository root: the bench helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.server import ROOT, serve

import cnnscope
from cnnscope.analysis.attribution import METHODS, Explainer
from cnnscope.analysis.evaluation import report


def _get(c: http.client.HTTPConnection, path: str) -> float:
    t0 = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    assert r.status == 200, (path, r.status)
    return (time.perf_counter() - t0) * 1000


def _cold_server_ms(checkout: Path, cache: str, settled: bool) -> float:
    """ms of the first evaluation answer of a server started from ``checkout``, asked as
    soon as it answers ``/api/health`` (its background work, which loads the test set,
    has just begun) or, ``settled``, once a top-examples click has been answered."""
    # Up once /api/health answers: the app runs, its background work has just begun.
    with serve(checkout=checkout, env={"XDG_CACHE_HOME": cache}) as server:
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        if settled:
            _get(c, "/api/top-examples/deep_mnist/fc1/7?k=9")  # the test set and index read
        return _get(c, "/api/evaluation/deep_mnist")


def cold_servers(baseline: Path | None, starts: int) -> None:
    """The first cached evaluation of fresh servers, each checkout with its own warm cache."""
    checkouts = {"this checkout": ROOT} | ({"baseline": baseline} if baseline else {})
    caches = {name: tempfile.mkdtemp(prefix="cnnscope-eval-") for name in checkouts}
    for name, path in checkouts.items():
        _cold_server_ms(path, caches[name], True)  # fills the disk caches
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(starts):
        for settled in (False, True):
            for name, path in checkouts.items():
                ms = _cold_server_ms(path, caches[name], settled)
                times.setdefault((name, settled), []).append(ms)
    for (name, settled), ms in times.items():
        when = "once settled" if settled else "right after /api/health"
        print(
            f"cached evaluation, first answer of a cold server, {when} ({name}): median "
            f"{statistics.median(ms):.0f} ms of {len(ms)} ({', '.join(f'{v:.0f}' for v in ms)})"
        )
    print(f"load average: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, help="another checkout to compare (e.g. ../main)")
    p.add_argument("--starts", type=int, default=3, help="cold starts per checkout (3)")
    p.add_argument("--only-cold", action="store_true", help="only the cold-server figure")
    args = p.parse_args()
    cold_servers(args.baseline, args.starts)
    if args.only_cold:
        return
    model, _ = cnnscope.load_model()
    data = cnnscope.load_mnist()
    with tempfile.TemporaryDirectory() as cache:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            report(model, data.test_images, data.test_labels, cache=False)
            times.append(time.perf_counter() - t0)
        report(model, data.test_images, data.test_labels, cache_dir=cache)
        t0 = time.perf_counter()
        cached = report(model, data.test_images, data.test_labels, cache_dir=cache)
        cached_s = time.perf_counter() - t0
    print(
        f"evaluation of 10,000 test images ({torch.get_num_threads()} threads): "
        f"median {statistics.median(times):.2f} s uncached, {cached_s * 1000:.0f} ms cached "
        f"(cached={cached.cached}); accuracy {cached.accuracy:.2%}"
    )
    images = [data.test_images[i].numpy().astype(np.float32) / 255 for i in range(50)]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for method in METHODS:
            explainer = Explainer(model, method)
            explainer(images[0])
            ms = []
            for x in images:
                t0 = time.perf_counter()
                explainer(x)
                ms.append((time.perf_counter() - t0) * 1000)
            print(
                f"attribution {method:<11} {threads} thread(s): "
                f"median {statistics.median(ms):6.1f} ms, p99 {np.percentile(ms, 99):6.1f} ms"
            )


if __name__ == "__main__":
    main()
