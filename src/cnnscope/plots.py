"""Matplotlib figures for the CLI's PNG exports. Each takes an optional ``ax`` or builds its
own figure and returns the ``Figure``; nothing here shows or saves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .analysis.attribution import Attribution
from .analysis.evaluation import Mistake, Report

__all__ = [
    "attribution_figure",
    "class_points_figure",
    "confusion_figure",
    "embedding_figure",
    "image_grid_figure",
    "mistakes_figure",
]


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = plt.subplots(figsize=size, layout="constrained")
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
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {report.accuracy:.2%} on {len(report.labels):,} images")
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.array([0, 0.01, 0.05, 0.25, 1.0])
    bar.set_ticks(np.sqrt(ticks), labels=[f"{t:.0%}" for t in ticks])
    bar.set_label("share of the true class")
    return fig


def mistakes_figure(
    mistakes: Sequence[Mistake], images: np.ndarray, columns: int = 8, title: str = ""
) -> Figure:
    """A gallery of misclassified digits, each titled "True: x, Pred: y (p)"."""
    count = max(1, len(mistakes))
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * 1.3, rows * 1.5), layout="constrained", squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, mistakes, strict=False):
        ax.imshow(images[m.index], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"True: {m.true}, Pred: {m.pred}\np={m.confidence:.2f}", fontsize=7)
    fig.suptitle(title or f"{len(mistakes)} misclassified, most confident first", fontsize=10)
    return fig


def attribution_figure(image: np.ndarray, attributions: Sequence[Attribution]) -> Figure:
    """The input beside each attribution map (diverging colours, zero white)."""
    fig, axes = plt.subplots(
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
    fig, axes = plt.subplots(
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


def image_grid_figure(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    columns: int = 16,
    title: str = "",
    signed: bool = False,
    boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
) -> Figure:
    """Images (N, H, W) in a grid; ``signed`` uses a diverging map centred on zero, and
    ``boxes`` draws a (top, left, bottom, right) rectangle on each image."""
    n = max(1, len(images))
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(columns * 0.9, rows * (1.05 if titles else 0.9) + 0.4),
        layout="constrained",
        squeeze=False,
    )
    m = float(np.abs(images).max()) or 1.0
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, images, strict=False)):
        if signed:
            ax.imshow(img, cmap="RdBu_r", vmin=-m, vmax=m)
        else:
            ax.imshow(img, cmap="gray", vmin=0, vmax=1 if img.max() <= 1 else 255)
        if titles:
            ax.set_title(titles[i], fontsize=6)
        if boxes and boxes[i] is not None:
            top, left, bottom, right = boxes[i]  # type: ignore[misc]
            ax.add_patch(
                plt.Rectangle(
                    (left - 0.5, top - 0.5),
                    right - left,
                    bottom - top,
                    fill=False,
                    edgecolor="#f5a524",
                    linewidth=1.2,
                )
            )
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
