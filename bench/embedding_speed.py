"""Embedding speed and quality on this machine, for the shipped deep_mnist.

Run: ``python bench/embedding_speed.py``. Prints the time of one t-SNE of all 10,000 test
images' fc1 vectors (1,024-D; PCA to 50, then openTSNE with FFT gradients), its kNN
accuracy and trustworthiness; then the shipped snapshot series (2,000 points each),
aligned and independent: total time, per-frame kNN/trustworthiness, and the mean
frame-to-frame displacement.
"""

from __future__ import annotations

import time

import numpy as np

import cnnscope
from cnnscope.analysis.activations import record
from cnnscope.analysis.embedding import Embedder, knn_accuracy
from cnnscope.analysis.snapshots import Snapshots, load_snapshots
from cnnscope.data import to_float
from cnnscope.store import shipped


def main() -> None:
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
