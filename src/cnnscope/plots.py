"""The CLI's PNG exports: grids of images as numpy + Pillow tile sheets, charts as matplotlib
figures. A chart takes an optional ``ax`` or builds its own figure and returns the
``Figure``; a tile sheet is a ``PIL.Image``. Nothing here shows or saves."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from .analysis.attribution import Attribution
from .analysis.evaluation import Mistake, Report

__all__ = [
    "attribution_figure",
    "class_points_figure",
    "confusion_figure",
    "embedding_figure",
    "mistakes_figure",
    "probabilities_figure",
    "tile_sheet",
]


def _subplots(
    *grid: int,
    figsize: tuple[float, float],
    layout: Literal["constrained"] = "constrained",
    **kw: Any,
) -> tuple[Figure, Any]:
    """A figure and its axes made without pyplot: nothing keeps it once the caller lets
    go (a command run many times in one process kept every figure: pyplot's warning after
    20), and no GUI backend is involved."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*grid, **kw)


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = _subplots(figsize=size, layout="constrained")
    return fig, new_ax


def confusion_figure(report: Report, ax: Axes | None = None, title: str = "") -> Figure:
    """The confusion matrix: counts in the cells, colour = share of the true class."""
    fig, ax = _figure(ax, (7, 6))
    shares = report.confusion_normalized
    # Off-diagonal cells hold at most a few %: a log-like scale keeps them visible.
    image = ax.imshow(np.sqrt(shares), cmap="Blues", vmin=0, vmax=1)
    n = len(report.confusion)
    for t in range(n):
        for p in range(n):
            count = int(report.confusion[t, p])
            if count:
                colour = "white" if shares[t, p] > 0.5 else "black"
                ax.text(p, t, str(count), ha="center", va="center", fontsize=8, color=colour)
    names = report.classes
    ax.set_xticks(range(n), labels=names, rotation=90 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {report.accuracy:.2%} on {len(report.labels):,} images")
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.array([0, 0.01, 0.05, 0.25, 1.0])
    bar.set_ticks(np.sqrt(ticks), labels=[f"{t:.0%}" for t in ticks])
    bar.set_label("share of the true class")
    return fig


def mistakes_figure(
    mistakes: Sequence[Mistake],
    images: np.ndarray,
    columns: int = 8,
    title: str = "",
    classes: Sequence[str] | None = None,
) -> Figure:
    """A gallery of misclassified images, each titled "True: x, Pred: y (p)" (class names
    from ``classes``, else the label numbers)."""
    count = max(1, len(mistakes))
    rows = int(np.ceil(count / columns))
    fig, axes = _subplots(
        rows, columns, figsize=(columns * 1.3, rows * 1.5), layout="constrained", squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes, strict=False):
        ax.imshow(images[m.index], cmap="gray", vmin=0, vmax=255)
        true, pred = (classes[m.true], classes[m.pred]) if classes else (m.true, m.pred)
        ax.set_title(f"True: {true}, Pred: {pred}\np={m.confidence:.2f}", fontsize=7)
    fig.suptitle(title or f"{len(mistakes)} misclassified, most confident first", fontsize=10)
    return fig


def attribution_figure(image: np.ndarray, attributions: Sequence[Attribution]) -> Figure:
    """The input beside each attribution map (diverging colours, zero white)."""
    fig, axes = _subplots(
        1,
        len(attributions) + 1,
        figsize=(2.2 * (len(attributions) + 1), 2.6),
        layout="constrained",
        squeeze=False,
    )
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
    if attributions:
        probs = attributions[0].probabilities
        axes[0, 0].set_title(
            f"input (pred {int(np.argmax(probs))}, p={max(probs):.2f})", fontsize=8
        )
    for ax, a in zip(axes[0, 1:], attributions, strict=True):
        m = float(np.abs(a.map).max()) or 1.0
        ax.imshow(a.map, cmap="RdBu_r", vmin=-m, vmax=m)
        ax.set_title(f"{a.method} → {a.target}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def probabilities_figure(
    probabilities: Sequence[float] | np.ndarray, ax: Axes | None = None, title: str = ""
) -> Figure:
    """The ten class probabilities as labelled bars, the predicted class highlighted."""
    fig, ax = _figure(ax, (5, 2.6))
    p = np.asarray(probabilities, dtype=float)
    colours = ["#d1495b" if k == int(np.argmax(p)) else "#8d99ae" for k in range(len(p))]
    bars = ax.bar(range(len(p)), p, color=colours)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in p], fontsize=7, padding=1)
    ax.set_xticks(range(len(p)))
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("digit")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    return fig


DIGIT_COLOURS = plt.get_cmap("tab10")


def embedding_figure(
    coords: np.ndarray,
    labels: np.ndarray,
    title: str = "",
    ax: Axes | None = None,
    limits: float | None = None,
) -> Figure:
    """A 2-D embedding: points coloured by digit, each class labelled at its median."""
    fig, ax = _figure(ax, (6, 6))
    ax.scatter(
        coords[:, 0],
        coords[:, 1],
        c=labels,
        cmap=DIGIT_COLOURS,
        vmin=-0.5,
        vmax=9.5,
        s=4,
        linewidths=0,
        alpha=0.8,
    )
    for k in range(10):
        pts = coords[labels == k]
        if len(pts):
            x, y = np.median(pts, axis=0)
            ax.text(
                x,
                y,
                str(k),
                fontsize=13,
                weight="bold",
                ha="center",
                va="center",
                color=DIGIT_COLOURS(k),
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
            )
    if limits is not None:
        ax.set_xlim(-limits, limits)
        ax.set_ylim(-limits, limits)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return fig


def class_points_figure(points: dict[str, list[list[float]]]) -> Figure:
    """The 10 class weight vectors (and class means) in 2-D, labelled by digit."""
    fig, axes = _subplots(
        1, len(points), figsize=(4 * len(points), 4), layout="constrained", squeeze=False
    )
    names = {
        "weights": "last layer's class weight vectors (PCA)",
        "means": "class-mean representations (PCA)",
    }
    for ax, (key, xy) in zip(axes[0], points.items(), strict=True):
        arr = np.asarray(xy)
        for k, (x, y) in enumerate(arr):
            ax.scatter([x], [y], color=DIGIT_COLOURS(k), s=60)
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=12)
        ax.set_title(names.get(key, key), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.margins(0.2)
    return fig


_PAPER = (255, 255, 255)
_INK = (20, 20, 20)
_BOX = (245, 165, 36)  # the receptive-field rectangle, as the page draws it


@functools.cache
def _fonts() -> tuple[Any, Any]:
    """Pillow's bitmap font (latin-1 only) and its scalable default (any character)."""
    scalable = ImageFont.load_default()
    return getattr(ImageFont, "load_default_imagefont", lambda: scalable)(), scalable


def _font(text: str) -> Any:
    """The bitmap font where it can write ``text``: a thousand labels draw in a tenth of
    the time the scalable font takes."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return _fonts()[1]
    return _fonts()[0]


def _to_rgb(images: np.ndarray, signed: bool, each: bool) -> np.ndarray:
    """(N, H, W) values → (N, H, W, 3) uint8: grey levels, or RdBu_r centred on zero."""
    x = images.astype(np.float32)
    axes = (1, 2)
    if signed:
        m = np.abs(x).max(axis=axes, keepdims=True) if each else np.abs(x).max()
        unit = (x / np.maximum(m, 1e-12) + 1) / 2  # [-m, m] → [0, 1], zero at 0.5
        rgba = matplotlib.colormaps["RdBu_r"](unit, bytes=True)  # a lookup, no figure
        return np.asarray(rgba[..., :3], dtype=np.uint8)
    if each:  # each map on its own min–max (convnetjs): a weak map is still legible
        lo = x.min(axis=axes, keepdims=True)
        span = x.max(axis=axes, keepdims=True) - lo
        grey = np.where(span > 0, (x - lo) / np.maximum(span, 1e-12), 0.0)
    else:
        grey = np.clip(x / (1.0 if x.size == 0 or x.max() <= 1 else 255.0), 0, 1)
    g = np.round(grey * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def tile_sheet(
    images: np.ndarray,
    cols: int = 16,
    scale: int = 3,
    labels: Sequence[str] | None = None,
    *,
    title: str = "",
    signed: bool = False,
    each: bool = False,
    boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
    gap: int = 4,
) -> Image.Image:
    """Images (N, H, W) in a grid of ``cols`` columns, each enlarged ``scale`` times.

    Pixels are blown up without smoothing (each input pixel a ``scale``×``scale`` block),
    so a sheet of 1,024 fc1 images takes a fraction of a second where a matplotlib grid of
    1,024 axes takes most of a minute.

    Parameters
    ----------
    images
        (N, H, W). Grey by default: values in [0, 1] if the largest is ≤ 1, else [0, 255].
    cols
        Columns; fewer when there are fewer images.
    scale
        Screen pixels per image pixel; 3–6 reads well for 28×28 digits.
    labels
        One short caption per image, drawn above it.
    title
        A line above the grid.
    signed
        A diverging map (blue < 0 < red, zero white) on a scale symmetric about zero:
        for weights and gradients.
    each
        Scale each image to its own range instead of one range for all.
    boxes
        A (top, left, bottom, right) rectangle per image (``None`` for none), in the
        image's pixels, bottom and right exclusive: e.g. a receptive field.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"tile_sheet takes images (N, H, W), not shape {images.shape}")
    n, h, w = images.shape
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = int(draw_probe.textbbox((0, 0), "Ag0", font=_font("Ag0"))[3]) + 2
    label_w = max((draw_probe.textlength(t, font=_font(t)) for t in labels or []), default=0)
    cell_w = max(w * scale, int(np.ceil(label_w)))
    cell_h = h * scale + (text_h if labels else 0)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    top = text_h + gap if title else 0
    width, height = gap + cols * (cell_w + gap), top + gap + rows * (cell_h + gap)
    canvas = np.full((height, width, 3), _PAPER, dtype=np.uint8)
    origins = []  # each tile's top-left corner on the sheet
    if n:
        tiles = _to_rgb(images, signed, each)
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)  # (N, H·s, W·s, 3)
        for i in range(n):
            r, c = divmod(i, cols)
            x = gap + c * (cell_w + gap) + (cell_w - w * scale) // 2
            y = top + gap + r * (cell_h + gap) + (text_h if labels else 0)
            canvas[y : y + h * scale, x : x + w * scale] = tiles[i]
            origins.append((x, y))
    sheet = Image.fromarray(canvas)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap, gap), title, fill=_INK, font=_font(title))
    for i, (x, y) in enumerate(origins):
        if labels:
            c = i % cols
            xy = (gap + c * (cell_w + gap), y - text_h)
            draw.text(xy, labels[i], fill=_INK, font=_font(labels[i]))
        if boxes and boxes[i] is not None:
            t, left, b, right = boxes[i]  # type: ignore[misc]
            draw.rectangle(
                (x + left * scale, y + t * scale, x + right * scale - 1, y + b * scale - 1),
                outline=_BOX,
                width=max(1, scale // 2),
            )
    return sheet
