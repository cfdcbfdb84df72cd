"""How the time of the slow views grows with their work, on the shipped deep_mnist.

Run: ``python bench/growth.py [--out bench/out/growth.png] [--quick]``. Times, at four
sizes each:

* features: regularized preferred images of 8, 16, 32, 64 fc1 units (``--quick``: fewer
  steps), rendered in batches as the server does;
* embedding: the aligned t-SNE series of 1, 2, 5, 10 snapshots of the shipped run
  (2,000 points each; it ships 9, the tenth repeats the last);
* evaluation: predictions and the report of 1,250 … 10,000 test images, uncached.

Prints each time and the exponent b of time ≈ a · work^b fitted on a log-log scale
over all sizes and between the largest two (1: linear; below 1: fixed costs still
matter at these sizes), and writes the log-log plot. Nothing here should grow faster
than linearly: every unit, snapshot and image is independent work, done in batches.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import cnnscope
from cnnscope.analysis.embedding import Embedder
from cnnscope.analysis.evaluation import report
from cnnscope.analysis.features import RenderConfig, layer_images
from cnnscope.analysis.snapshots import Snapshots, load_snapshots
from cnnscope.store import shipped


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _frames(snaps: Snapshots, n: int) -> Snapshots:
    """The first ``n`` snapshots; past the shipped ones, the last repeated."""
    last = len(snaps.steps) - 1
    pick = [min(i, last) for i in range(n)]
    return replace(
        snaps,
        steps=[snaps.steps[i] if i <= last else snaps.steps[last] + i - last for i in range(n)],
        epochs=[snaps.epochs[i] for i in pick],
        subset_accuracy=[snaps.subset_accuracy[i] for i in pick],
        stages={name: [frames[i] for i in pick] for name, frames in snaps.stages.items()},
    )


def exponent(work: list[int], seconds: list[float]) -> float:
    """b in seconds ≈ a · work^b, least squares on log-log."""
    return float(np.polyfit(np.log(work), np.log(seconds), 1)[0])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("bench/out/growth.png"), help="the plot")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run for a busy machine: 16 render steps, 1–4 snapshots",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--only",
        nargs="+",
        choices=["features", "embedding", "evaluation"],
        help="time only these (default: all three)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model, _ = cnnscope.load_model("deep_mnist")
    data = cnnscope.load_mnist()
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    cfg = replace(RenderConfig(), steps=16) if args.quick else RenderConfig()
    snaps = load_snapshots(shipped("deep_mnist", "snapshots.safetensors"))
    series: dict[str, tuple[str, list[int], Callable[[int], object]]] = {
        "features": (
            "fc1 units",
            [8, 16, 32, 64],
            lambda n: layer_images(model, "fc1", units=range(n), config=cfg),
        ),
        "embedding": (
            "snapshots",
            [1, 2, 3, 4] if args.quick else [1, 2, 5, 10],
            lambda n: Embedder("tsne", aligned=True).fit(_frames(snaps, n)),
        ),
        "evaluation": (
            "test images",
            [1250, 2500, 5000, 10000],
            lambda n: report(model, data.test_images[:n], data.test_labels[:n], cache=False),
        ),
    }
    results: dict[str, tuple[str, list[int], list[float]]] = {}
    for name, (unit, sizes, run) in series.items():
        if args.only and name not in args.only:
            continue
        run(sizes[0])  # warm-up: first-call costs (allocations, imports) are not growth
        seconds = []
        for n in sizes:
            seconds.append(_time(lambda n=n, run=run: run(n)))
            print(f"{name:<10} {n:>6} {unit}: {seconds[-1]:7.2f} s", flush=True)
        b = exponent(sizes, seconds)
        last = exponent(sizes[-2:], seconds[-2:])  # where fixed costs matter least
        print(
            f"{name:<10} time ∝ {unit}^{b:.2f} over all sizes, ^{last:.2f} between the "
            f"largest two (1.00 = linear)",
            flush=True,
        )
        results[name] = (unit, sizes, seconds)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (unit, sizes, seconds) in results.items():
        rel = np.asarray(sizes) / sizes[0]
        ax.loglog(rel, seconds, "o-", label=f"{name} ({unit}, ^{exponent(sizes, seconds):.2f})")
    ax.loglog([1, 8], [0.1, 0.8], "k:", label="linear")
    ax.set_xlabel("work, relative to the smallest size")
    ax.set_ylabel("seconds")
    ax.set_title("cnnscope: time vs work (deep_mnist)")
    ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
