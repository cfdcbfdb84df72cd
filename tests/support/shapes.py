"""A tiny seeded data set of four shapes, for the "any data" tests (test-only code).

Each 28×28 image is one shape drawn in white on black at a random offset and thickness,
with a little noise: ``bar`` (horizontal), ``pillar`` (vertical), ``cross``, ``ring``. A
small CNN tells them apart after a few dozen steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ("bar", "pillar", "cross", "ring")


def shapes(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images uint8 (n, size, size) and their labels int64 (n,), classes balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(NAMES)
    rng.shuffle(labels)
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for img, k in zip(images, labels, strict=True):
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        t = int(rng.integers(1, 3))
        if k in (0, 2):
            img[cy - t : cy + t + 1, 4 : size - 4] = 255
        if k in (1, 2):
            img[4 : size - 4, cx - t : cx + t + 1] = 255
        if k == 3:
            r = np.hypot(yy - cy, xx - cx)
            img[(r > 6 - t) & (r < 7 + t)] = 255
    return images, labels.astype(np.int64)


def write_shapes(folder: Path, n_train: int = 320, n_test: int = 80, seed: int = 0) -> Path:
    """``folder/shapes.npz`` (uint8 N×H×W train, float N×1×H×W test) and ``classes.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = shapes(n_train, seed)
    x_test, y_test = shapes(n_test, seed + 1)
    np.savez_compressed(
        folder / "shapes.npz",
        x_train=x_train,
        y_train=y_train,
        x_test=(x_test[:, None] / 255.0).astype(np.float32),  # the other accepted form
        y_test=y_test,
    )
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return folder
