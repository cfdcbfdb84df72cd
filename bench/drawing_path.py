"""Accuracy of the drawing path on MNIST test digits redrawn as people draw them.

Run: ``python bench/drawing_path.py`` (``--models all`` for every shipped model, ``-n``
digits, ``--seed``). Each digit's centre line is stroked on the 280×280 canvas with a
round pen (tests/support/rerender.py): full size (the pen's path 200 px tall) with the
page's brush (22 px there); 60, 45 and 30 px tall with the page's brush, which follows the
drawing's size (static/pad.js: 0.15 × the path's longer side, 4–22 px), and 30 px with the
fixed 22-px brush of before; full size with a 2-px pen;
full size with one brush-sized stray dot; full size black on white. Each is read by the
old path (``to_mnist`` before issue 13, copied below) and the new one
(:func:`cnnscope.preprocess.prepare`); the original 28×28 digits are the reference.
Goals (issue 13): ≥ 95 % at 45 px, ≥ 90 % at 30 px, ≥ 98 % with the 2-px pen, ≤ 1 point
lost to a stray dot, ≥ 95 % black on white, ≤ 0.3 points lost on full-size drawings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# The repository root: test-only helpers (tests/support) are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.rerender import BRUSH, THIN_PEN, centre_line, draw, inverted, with_stray_dot

import cnnscope
from cnnscope.data import load_mnist
from cnnscope.preprocess import to_mnist

SHIPPED = ("deep_mnist", "hvass", "single_conv", "lenet5")
FULL = 200  # the pen's path of an ordinary drawing, in canvas pixels


def old_to_mnist(image: np.ndarray) -> np.ndarray:
    """``to_mnist`` as it was before issue 13 (commit cc42b93): crop, fit, centre."""
    image = np.asarray(image, dtype=np.float32)
    peak = float(image.max()) if image.size else 0.0
    if peak <= 0.0:
        return np.zeros((28, 28), np.float32)
    rows = np.flatnonzero((image > 0.1 * peak).any(axis=1))
    cols = np.flatnonzero((image > 0.1 * peak).any(axis=0))
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = 20 / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        crop = np.asarray(
            Image.fromarray(crop, mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS)
        )
        crop = np.clip(crop, 0.0, 1.0)
    total = float(crop.sum())
    com_y = float(crop.sum(axis=1) @ np.arange(new_h)) / total
    com_x = float(crop.sum(axis=0) @ np.arange(new_w)) / total
    top = min(max(round(14.0 - com_y), 0), 28 - new_h)
    left = min(max(round(14.0 - com_x), 0), 28 - new_w)
    out = np.zeros((28, 28), np.float32)
    out[top : top + new_h, left : left + new_w] = crop
    return out


# (digit, its centre line, its full-size drawing, rng) → a drawing. The stray dot and
# black-on-white are made from the full-size drawings, so their loss is theirs alone.
Drawer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]

# The page's brush (static/pad.js, BRUSH and brushFor): a fraction of the path's longer side.
PAGE_BRUSH = (4.0, 22.0, 0.15)  # min px, max px, fraction


def page_brush(line: np.ndarray, height: float) -> float:
    """The page's brush for ``line`` (a digit's centre line) drawn ``height`` px tall."""
    lo, hi, fraction = PAGE_BRUSH
    span = line.reshape(-1, 2).max(0) - line.reshape(-1, 2).min(0)  # (rows, cols)
    extent = height * float(span.max()) / max(float(span[0]), 1e-6)
    return float(np.clip(fraction * extent, lo, hi))


def by_page(height: float) -> Drawer:
    return lambda x, line, full, rng: draw(x, rng, height, page_brush(line, height), line=line)


CONDITIONS: dict[str, Drawer] = {
    "full size, page's brush": lambda x, line, full, rng: full,
    "60 px tall, page's brush": by_page(60),
    "45 px tall, page's brush": by_page(45),
    "30 px tall, page's brush": by_page(30),
    "30 px tall, fixed 22-px brush": lambda x, line, full, rng: draw(x, rng, 30, BRUSH, line=line),
    "2-px pen": lambda x, line, full, rng: draw(x, rng, FULL, THIN_PEN, line=line),
    "full size + a stray dot": lambda x, line, full, rng: with_stray_dot(full, rng),
    "full size, black on white": lambda x, line, full, rng: inverted(full),
}


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(images.astype(np.float32))[:, None]).argmax(1)
    return float((pred.numpy() == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=1000, help="test digits (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="picks the digits and places (0)")
    p.add_argument("--models", default="deep_mnist", help="comma-separated, or 'all' (deep_mnist)")
    args = p.parse_args()
    names = SHIPPED if args.models == "all" else tuple(args.models.split(","))
    models = {name: cnnscope.load_model(name)[0].eval() for name in names}

    data = load_mnist()
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(data.test_images), size=args.n, replace=False)
    digits = data.test_images.numpy()[pick]
    labels = data.test_labels.numpy()[pick]
    originals = digits.astype(np.float32) / 255.0
    lines = [centre_line(x) for x in digits]
    place = np.random.default_rng([args.seed, 1])
    fulls = [
        draw(x, place, FULL, page_brush(line, FULL), line=line)
        for x, line in zip(digits, lines, strict=True)
    ]

    rows: list[tuple[str, dict[str, float], dict[str, float], float]] = []
    ref = {m: accuracy(model, originals, labels) for m, model in models.items()}
    rows.append(("28×28 originals (no preprocessing)", ref, ref, 0.0))
    olds = np.stack([old_to_mnist(x) for x in originals])
    news = np.stack([to_mnist(x) for x in originals])
    through = (
        {m: accuracy(model, olds, labels) for m, model in models.items()},
        {m: accuracy(model, news, labels) for m, model in models.items()},
    )
    rows.append(("28×28 originals through the path", *through, 0.0))
    for name, drawer in CONDITIONS.items():
        cond_rng = np.random.default_rng([args.seed, len(rows)])
        drawings = [
            drawer(x, line, full, cond_rng)
            for x, line, full in zip(digits, lines, fulls, strict=True)
        ]
        old = np.stack([old_to_mnist(d) for d in drawings])
        t0 = time.perf_counter()
        new = np.stack([to_mnist(d) for d in drawings])
        ms = (time.perf_counter() - t0) * 1000 / len(drawings)
        before = {m: accuracy(model, old, labels) for m, model in models.items()}
        after = {m: accuracy(model, new, labels) for m, model in models.items()}
        rows.append((name, before, after, ms))

    print(f"{args.n} MNIST test digits (seed {args.seed}) redrawn on the 280×280 canvas")
    head = "".join(f" | {m:>20}" for m in names)
    print(f"{'condition':<36}{head} | new ms/img")
    print(f"{'':<36}" + "".join(f" | {'before → after':>20}" for _ in names) + " |")
    for name, before, after, ms in rows:
        cells = "".join(f" | {before[m]:>8.1%} → {after[m]:>7.1%}" for m in names)
        print(f"{name:<36}{cells} | {ms:8.1f}")


if __name__ == "__main__":
    main()
