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


# --- Drawing as a person does: a centre line stroked with a round pen ----------------------

CANVAS = 280  # the page's canvas, in pixels
BRUSH = 22  # the page's brush diameter (src/cnnscope/server/static/pad.js)
THIN_PEN = 2  # a thin pen (a stylus, a 1-px-per-point export)

_UP = 4  # MNIST digits are upsampled this much before thinning: a smoother centre line


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang–Suen thinning of a boolean mask to a one-pixel-wide centre line.

    Zhang & Suen (1984), "A fast parallel algorithm for thinning digital patterns": each
    pass removes boundary pixels that are neither endpoints nor bridges, alternating the
    side it removes from so the line stays in the middle.
    """
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            # Neighbours P2..P9, clockwise from north.
            p = [
                img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],
                img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2],
            ]  # fmt: skip
            b = sum(q.astype(np.int16) for q in p)
            a = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int16) for i in range(8))
            if step == 0:
                c1, c2 = p[0] * p[2] * p[4], p[2] * p[4] * p[6]
            else:
                c1, c2 = p[0] * p[2] * p[6], p[0] * p[4] * p[6]
            core = img[1:-1, 1:-1]
            remove = (core == 1) & (b >= 2) & (b <= 6) & (a == 1) & (c1 == 0) & (c2 == 0)
            if remove.any():
                core[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def centre_line(digit: np.ndarray) -> np.ndarray:
    """The pen's path of an MNIST digit: segments (S, 2, 2) of (y, x) in 28×28 units.

    The digit is upsampled 4× (bilinear), thresholded at half its peak and thinned; each
    pair of 8-neighbouring centre-line pixels is one segment. A lone pixel is a segment of
    length zero (a dot).
    """
    x = np.asarray(digit, np.float32)
    x = x / max(float(x.max()), 1e-6)
    size = x.shape[0] * _UP
    big = np.asarray(Image.fromarray(x, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    skel = _thin(big > 0.5)
    ys, xs = np.nonzero(skel)
    pts = np.stack([ys, xs], axis=1)
    index = {(int(y), int(x)): i for i, (y, x) in enumerate(pts)}
    segs = []
    for i, (y, x) in enumerate(pts):
        linked = False
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1), (0, -1), (-1, -1), (-1, 0), (-1, 1)):
            j = index.get((int(y + dy), int(x + dx)))
            if j is not None:
                linked = True
                if j > i:
                    segs.append((pts[i], pts[j]))
        if not linked:
            segs.append((pts[i], pts[i]))
    # Pixel centres in the upsampled grid → continuous 28×28 coordinates.
    return (np.asarray(segs, np.float64) + 0.5) / _UP


def stroke(segments: np.ndarray, pen: float, canvas: int = CANVAS) -> np.ndarray:
    """Stroke segments (S, 2, 2) of canvas (y, x) with a round pen, anti-aliased.

    A pixel's ink is the pen's coverage of it, approximated from the distance d of its
    centre to the path: clip(pen/2 + 0.5 - d, 0, 1) — what a canvas's anti-aliased round
    line draws. White ink on black, (canvas, canvas) float32 in [0, 1].
    """
    from scipy.ndimage import distance_transform_edt
    from scipy.spatial import cKDTree

    a, b = segments[:, 0], segments[:, 1]
    n = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / 0.2)).astype(int)
    # Dense points along every segment (0.2 px apart): the distance to them is the
    # distance to the path within 0.01 px.
    pts = np.concatenate(
        [a[i] + (b[i] - a[i]) * np.linspace(0, 1, n[i] + 1)[:, None] for i in range(len(a))]
    )
    r = pen / 2
    # Only pixels near the path need the exact distance: find them on the pixel grid.
    seen = np.ones((canvas, canvas), bool)
    idx = np.clip(np.floor(pts).astype(int), 0, canvas - 1)
    seen[idx[:, 0], idx[:, 1]] = False
    near = np.argwhere(distance_transform_edt(seen) <= r + 2.5)  # (P, 2)
    d, _ = cKDTree(pts).query(near + 0.5, distance_upper_bound=r + 1)
    out = np.zeros((canvas, canvas), np.float32)
    out[near[:, 0], near[:, 1]] = np.clip(r + 0.5 - d, 0.0, 1.0)  # inf → 0
    return out


def draw(
    digit: np.ndarray,
    rng: np.random.Generator,
    height: float,
    pen: float = BRUSH,
    canvas: int = CANVAS,
    line: np.ndarray | None = None,
) -> np.ndarray:
    """Draw an MNIST digit on the canvas as a person would: its centre line, ``height``
    pixels tall (the pen's path, not counting the pen's width), at a random place, with a
    round pen ``pen`` pixels wide. (28, 28) in [0, 1] or uint8 → (canvas, canvas) float32.

    ``line`` is the digit's :func:`centre_line`, when already computed.
    """
    segs = centre_line(digit) if line is None else line
    flat = segs.reshape(-1, 2)
    lo, hi = flat.min(0), flat.max(0)
    scale = height / max(hi[0] - lo[0], 1e-6)
    # A wide digit drawn this tall must still fit the canvas.
    scale = min(scale, (canvas - pen - 2) / max(float((hi - lo).max()), 1e-6))
    size = (hi - lo) * scale
    margin = pen / 2 + 1
    top = rng.uniform(margin, canvas - margin - size[0])
    left = rng.uniform(margin, canvas - margin - size[1])
    placed = (segs - lo) * scale + np.array([top, left])
    return stroke(placed, pen, canvas)


def with_stray_dot(
    drawing: np.ndarray, rng: np.random.Generator, pen: float = BRUSH, gap: float = 40.0
) -> np.ndarray:
    """Add one pen-sized dot at a random place at least ``gap`` pixels from any ink
    (the farthest such place when none is free)."""
    from scipy.ndimage import distance_transform_edt

    canvas = drawing.shape[0]
    dist = distance_transform_edt(drawing < 0.05)
    r = pen / 2
    inner = dist[int(r) + 1 : canvas - int(r) - 1, int(r) + 1 : canvas - int(r) - 1]
    free = np.argwhere(inner >= gap + r)
    if len(free):
        y, x = free[rng.integers(len(free))]
    else:
        y, x = np.unravel_index(int(inner.argmax()), inner.shape)
    centre = np.array([[[y + r + 1.5, x + r + 1.5]] * 2])
    return np.maximum(drawing, stroke(centre, pen, canvas))


def inverted(drawing: np.ndarray) -> np.ndarray:
    """Black ink on white paper: a scan, a photo, a drawing app's default."""
    return (1.0 - drawing).astype(np.float32)
