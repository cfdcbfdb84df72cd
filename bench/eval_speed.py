"""Evaluation and attribution speed of the shipped deep_mnist on this machine.

Run: ``python bench/eval_speed.py``. Prints the time to predict the 10,000 test images
(uncached, median of 3), the cached report time, and each attribution method's latency
for one image (median and p99 over 50 calls) at 1 and 2 torch threads.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch

import cnnscope
from cnnscope.analysis.attribution import METHODS, Explainer
from cnnscope.analysis.evaluation import report


def main() -> None:
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
