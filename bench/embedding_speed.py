"""Embedding speed and quality on this machine, for the shipped deep_mnist.

Run: ``python bench/embedding_speed.py``. Prints the time of one t-SNE of all 10,000 test
images' fc1 vectors (1,024-D; PCA to 50, then openTSNE with FFT gradients), its kNN
accuracy and trustworthiness; then the shipped snapshot series (2,000 points each),
aligned and independent: total time, per-frame kNN/trustworthiness, and the mean
frame-to-frame displacement. ``--run N`` instead trains deep_mnist (``fast`` recipe, under
one epoch) with N snapshots and times the embedding of that run, aligned: issue 18's goal
is ≤ 20 s for a run of 10 snapshots.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import cnnscope
from cnnscope.analysis.activations import record
from cnnscope.analysis.embedding import Embedder, knn_accuracy
from cnnscope.analysis.snapshots import Snapshots, load_snapshots
from cnnscope.data import to_float
from cnnscope.store import shipped


def _run(frames: int) -> None:
    """A fresh run with ``frames`` snapshots (the last is the run's end), then its embedding."""
    from cnnscope.train import TrainConfig, fit

    every = 40
    steps = every * (frames - 1)  # snapshots at 0, 40, … and the final one at the end
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig.from_recipe(
            "fast",
            run_dir=tmp,
            steps=steps,
            snapshot_steps=tuple(range(0, steps, every)),
            checkpoint_every=0,
        )
        t0 = time.perf_counter()
        fit(config)
        trained = time.perf_counter() - t0
        snaps = load_snapshots(Path(tmp) / "snapshots")
        series = Embedder("tsne", aligned=True).fit(snaps)
    print(
        f"a run of {steps} steps ({trained:.0f} s of training) with {len(snaps.steps)} "
        f"snapshots × {len(snaps.labels)} points, aligned: {series.seconds:.1f} s "
        f"(goal ≤ 20 s for 10); mean displacement {series.displacement:.3f}; lowest "
        f"trustworthiness {min(series.trustworthiness):.3f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", type=int, metavar="N", help="embed a fresh run of N snapshots")
    args = p.parse_args()
    if args.run:
        return _run(args.run)
    model, _ = cnnscope.load_model()
    data = cnnscope.load_mnist()
    fc1 = np.concatenate(
        [
            record(model, to_float(data.test_images[i : i + 1000]), ["fc1"])["fc1"].numpy()
            for i in range(0, 10_000, 1000)
        ]
    )
    labels = data.test_labels.numpy()
    full = Snapshots(
        indices=np.arange(10_000),
        labels=labels,
        steps=[0],
        epochs=[0.0],
        subset_accuracy=[0.0],
        stages={"fc1": [fc1], "logits": [np.zeros((10_000, 10), np.float32)]},
        projection="none",
    )
    embedder = Embedder("tsne")
    t0 = time.perf_counter()
    y = embedder._embed(embedder._reduce(fc1), None)
    seconds = time.perf_counter() - t0
    print(
        f"t-SNE of 10,000 × {fc1.shape[1]} fc1 vectors: {seconds:.1f} s "
        f"(PCA to 50 + openTSNE FFT); 10-NN accuracy {knn_accuracy(fc1, labels):.3f} in fc1, "
        f"{knn_accuracy(y, labels):.3f} in 2-D"
    )
    del full

    snaps = load_snapshots(shipped("deep_mnist", "snapshots.safetensors"))
    for aligned in (True, False):
        series = Embedder("tsne", aligned=aligned).fit(snaps)
        kind = "aligned" if aligned else "independent"
        print(
            f"{len(snaps.steps)} snapshots × {len(snaps.labels)} points, {kind}: "
            f"{series.seconds:.1f} s; mean displacement between frames {series.displacement:.3f}"
        )
        if aligned:
            for s, ko, k2, t in zip(
                series.steps,
                series.knn_original,
                series.knn_2d,
                series.trustworthiness,
                strict=True,
            ):
                print(f"  step {s:5d}: kNN {ko:.3f} (fc1) {k2:.3f} (2-D), trustworthiness {t:.3f}")


if __name__ == "__main__":
    main()
