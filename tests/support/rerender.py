"""Re-render MNIST digits the way a person draws them: large and off-centre on a canvas.

Used by the preprocessing test and benchmark to check that :func:`preprocess.to_mnist`
undoes what a drawing canvas does to a digit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def rerender(digit: np.ndarray, rng: np.random.Generator, canvas: int = 280) -> np.ndarray:
    """(28, 28) float in [0, 1] → (canvas, canvas): scaled 5–9×, placed at random."""
    scale = rng.uniform(5.0, 9.0)
    size = min(canvas, round(28 * scale))
    big = Image.fromarray(digit.astype(np.float32), mode="F").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    out = np.zeros((canvas, canvas), np.float32)
    top, left = rng.integers(0, canvas - size + 1, size=2)
    out[top : top + size, left : left + size] = np.clip(np.asarray(big), 0.0, 1.0)
    return out


def agreement(model, images: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Re-render each (28, 28) uint8 image, preprocess it back, and compare.

    Returns the fraction classified the same as the original, the mean absolute pixel
    difference and the count.
    """
    import torch

    from cnnscope.preprocess import to_mnist

    rng = np.random.default_rng(seed)
    originals = images.astype(np.float32) / 255.0
    back = np.stack([to_mnist(rerender(x, rng)) for x in originals])
    with torch.no_grad():
        model.eval()
        a = model(torch.from_numpy(originals)[:, None]).argmax(1)
        b = model(torch.from_numpy(back)[:, None]).argmax(1)
    return {
        "agreement": float((a == b).float().mean()),
        "mean_abs_diff": float(np.abs(back - originals).mean()),
        "count": len(images),
    }
