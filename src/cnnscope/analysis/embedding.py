"""Watch the classes separate: 2-D embeddings of representation snapshots over training.

:class:`Embedder` holds the settings; ``Embedder(...).fit(snapshots)`` returns an
:class:`EmbeddingSeries`: one 2-D layout per snapshot with its kNN accuracy and
trustworthiness. With ``aligned=True`` (the default) each t-SNE frame starts from the
previous frame's layout (the first from PCA), so an animation moves smoothly instead of
jumping; PCA and UMAP frames are rotated onto the previous frame (orthogonal Procrustes).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._extras import require
from .snapshots import Snapshots

__all__ = [
    "Embedder",
    "EmbeddingSeries",
    "class_embedding",
    "class_vectors",
    "embed_snapshots",
    "knn_accuracy",
    "mean_displacement",
    "trustworthiness",
]

METHODS = ("tsne", "pca", "umap")


# scikit-learn, SciPy and openTSNE come with the [tsne] extra (umap-learn pulls the first
# two as well): imported on use, so the page and the other views run without them.
def _sklearn(module: str) -> Any:
    return require(f"sklearn.{module}", "tsne", "embeddings (PCA, kNN accuracy)")


def _umap() -> Any:
    return require("umap", "umap", "method 'umap'")


DENSE = 5000  # up to this many points, neighbours come from one dense distance matrix


def _distances(x: np.ndarray) -> np.ndarray:
    """(N, N) squared Euclidean distances, float64, each point infinitely far from itself."""
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(1)
    d: np.ndarray = np.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0)
    np.fill_diagonal(d, np.inf)
    return d


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each point's k nearest others, nearest first."""
    if len(x) <= DENSE:  # a matrix product: 0.02 s for 2,000 points, a tree took 0.3–0.9 s
        d = _distances(x)
        idx = np.argpartition(d, k, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, idx, 1), axis=1, kind="stable")
        return np.take_along_axis(idx, order, 1)
    nn = _sklearn("neighbors").NearestNeighbors(n_neighbors=k + 1).fit(x)
    out: np.ndarray = nn.kneighbors(x, return_distance=False)[:, 1:]  # drop each point itself
    return out


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out k-nearest-neighbour accuracy: how well neighbours share a class."""
    votes = labels[_neighbours(x, k)]  # (N, k)
    counts = np.zeros((len(x), int(labels.max()) + 1), np.int64)
    np.add.at(counts, (np.arange(len(x))[:, None], votes), 1)
    return float((counts.argmax(1) == labels).mean())


def trustworthiness(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """scikit-learn's ``trustworthiness(x, y, n_neighbors=k)``, without sorting all N²
    distances: each of a point's k nearest in ``y`` is ranked among its neighbours in
    ``x`` by counting the points closer than it (0.05 s for 2,000 points, was 0.8 s)."""
    n = len(x)
    if n > DENSE:
        return float(_sklearn("manifold").trustworthiness(x, y, n_neighbors=k))
    dx = _distances(x)
    near = _neighbours(y, k)  # (N, k) in the embedding
    far = np.take_along_axis(dx, near, 1)  # (N, k) their distances in the original
    penalty = 0
    for i in range(0, n, 256):  # (256, k, N) comparisons at a time
        rank = (dx[i : i + 256, None, :] < far[i : i + 256, :, None]).sum(-1) + 1
        penalty += int(np.maximum(rank - k, 0).sum())
    return 1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))


def _normalised(y: np.ndarray) -> np.ndarray:
    centred = y - y.mean(0)
    scaled: np.ndarray = centred / (np.sqrt((centred**2).sum(1).mean()) or 1.0)
    return scaled


def mean_displacement(frames: list[np.ndarray]) -> float:
    """Mean distance a point moves between consecutive frames, each scaled to unit RMS radius."""
    if len(frames) < 2:
        return 0.0
    scaled = [_normalised(f) for f in frames]
    return float(
        np.mean([np.linalg.norm(b - a, axis=1).mean() for a, b in itertools.pairwise(scaled)])
    )


@dataclass
class EmbeddingSeries:
    """2-D layouts of one stage across snapshots, with their quality figures."""

    method: str
    stage: str
    aligned: bool
    steps: list[int]
    epochs: list[float]
    subset_accuracy: list[float]
    indices: np.ndarray  # (N,) test-set indices
    labels: np.ndarray  # (N,)
    predictions: list[np.ndarray]  # (N,) per frame, from the snapshot's logits
    coords: list[np.ndarray]  # (N, 2) per frame
    knn_original: list[float]  # kNN accuracy in the stage's own space
    knn_2d: list[float]
    trustworthiness: list[float]
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def displacement(self) -> float:
        return mean_displacement(self.coords)

    def as_dict(self, decimals: int = 3) -> dict[str, Any]:
        return {
            "method": self.method,
            "stage": self.stage,
            "aligned": self.aligned,
            "indices": self.indices.tolist(),
            "labels": self.labels.tolist(),
            "settings": self.settings,
            "seconds": round(self.seconds, 2),
            "mean_displacement": round(self.displacement, 4),
            "frames": [
                {
                    "step": s,
                    "epoch": e,
                    "subset_accuracy": a,
                    "knn_original": ko,
                    "knn_2d": k2,
                    "trustworthiness": t,
                    "predictions": p.tolist(),
                    "coords": np.round(_normalised(c) * 10, decimals).tolist(),
                }
                for s, e, a, ko, k2, t, p, c in zip(
                    self.steps,
                    self.epochs,
                    self.subset_accuracy,
                    self.knn_original,
                    self.knn_2d,
                    self.trustworthiness,
                    self.predictions,
                    self.coords,
                    strict=True,
                )
            ],
        }


class Embedder:
    """Settings for embedding a series of snapshots.

    Parameters
    ----------
    method
        ``"tsne"`` (openTSNE, FFT-accelerated), ``"pca"``, or ``"umap"`` (needs the
        optional ``umap-learn`` package).
    stage
        ``"fc1"`` or ``"logits"``.
    aligned
        Start each frame from the previous one (t-SNE) or rotate it onto the previous one
        (PCA, UMAP). ``False`` embeds every frame independently.
    perplexity
        t-SNE's neighbourhood size; typical values are 20–50 for a few thousand points.
    components
        Principal components kept before t-SNE/UMAP (50 is usual; the shipped snapshots
        are already projected onto 50).
    knn
        Neighbours for kNN accuracy and trustworthiness.
    seed
        Makes every method reproducible.
    """

    def __init__(
        self,
        method: str = "tsne",
        stage: str = "fc1",
        *,
        aligned: bool = True,
        perplexity: float = 30.0,
        components: int = 50,
        knn: int = 10,
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown embedding method {method!r}; valid: {', '.join(METHODS)}")
        # A missing extra fails here, before any work, with the package to install.
        _sklearn("neighbors")
        if method == "umap":
            _umap()
        elif method == "tsne":
            require("openTSNE", "tsne", "method 'tsne'")
        self.method, self.stage, self.aligned = method, stage, aligned
        self.perplexity, self.components, self.knn = perplexity, components, knn
        self.seed, self.n_jobs = seed, n_jobs

    def fit(self, snaps: Snapshots, callback: Any = None) -> EmbeddingSeries:
        """Embed every snapshot of ``snaps``; ``callback(i, n)`` reports progress."""
        import time

        if self.stage not in snaps.stages:
            raise ValueError(
                f"no stage {self.stage!r} in these snapshots; they hold: {', '.join(snaps.stages)}"
            )
        t0 = time.perf_counter()
        labels = snaps.labels
        coords: list[np.ndarray] = []
        knn_orig, knn_2d, trust, preds = [], [], [], []
        previous: np.ndarray | None = None
        for i, x in enumerate(snaps.stages[self.stage]):
            x = self._reduce(np.asarray(x, dtype=np.float32))
            y = self._embed(x, previous if self.aligned else None)
            coords.append(y)
            previous = y
            knn_orig.append(knn_accuracy(x, labels, self.knn))
            knn_2d.append(knn_accuracy(y, labels, self.knn))
            trust.append(trustworthiness(x, y, self.knn))
            preds.append(np.asarray(snaps.stages["logits"][i]).argmax(1))
            if callback is not None:
                callback(i + 1, len(snaps.steps))
        return EmbeddingSeries(
            method=self.method,
            stage=self.stage,
            aligned=self.aligned,
            steps=list(snaps.steps),
            epochs=list(snaps.epochs),
            subset_accuracy=list(snaps.subset_accuracy),
            indices=snaps.indices,
            labels=labels,
            predictions=preds,
            coords=coords,
            knn_original=knn_orig,
            knn_2d=knn_2d,
            trustworthiness=trust,
            seconds=time.perf_counter() - t0,
            settings={
                "perplexity": self.perplexity,
                "components": self.components,
                "knn": self.knn,
                "seed": self.seed,
            },
        )

    def extend(self, series: EmbeddingSeries | None, snaps: Snapshots) -> EmbeddingSeries:
        """``series`` with the snapshots of ``snaps`` after its last step embedded after it.

        For a run still training: each new snapshot is laid out starting from the last
        frame (as :meth:`fit` does), so the frames already shown never move. ``None``
        (nothing laid out yet) is :meth:`fit`.
        """
        if series is None or not series.steps:
            return self.fit(snaps)
        import time

        t0 = time.perf_counter()
        previous = series.coords[-1]
        for i, step in enumerate(snaps.steps):
            if step <= series.steps[-1]:
                continue
            x = self._reduce(np.asarray(snaps.stages[self.stage][i], dtype=np.float32))
            y = self._embed(x, previous if self.aligned else None)
            previous = y
            series.steps.append(step)
            series.epochs.append(snaps.epochs[i])
            series.subset_accuracy.append(snaps.subset_accuracy[i])
            series.coords.append(y)
            series.knn_original.append(knn_accuracy(x, series.labels, self.knn))
            series.knn_2d.append(knn_accuracy(y, series.labels, self.knn))
            series.trustworthiness.append(trustworthiness(x, y, self.knn))
            series.predictions.append(np.asarray(snaps.stages["logits"][i]).argmax(1))
        series.seconds += time.perf_counter() - t0
        return series

    def _reduce(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] <= self.components:
            return x
        pca = _sklearn("decomposition").PCA(self.components, random_state=self.seed)
        reduced: np.ndarray = pca.fit_transform(x).astype(np.float32)
        return reduced

    def _embed(self, x: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        if self.method == "pca":
            y = _sklearn("decomposition").PCA(2, random_state=self.seed).fit_transform(x)
            return _rotate_onto(y, previous)
        if self.method == "umap":
            y = (
                _umap()
                .UMAP(random_state=self.seed, init="spectral" if previous is None else previous)
                .fit_transform(x)
            )
            return _rotate_onto(np.asarray(y), previous)
        return self._tsne(x, previous)

    def _tsne(self, x: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        TSNE = require("openTSNE", "tsne").TSNE
        init_ = require("openTSNE.initialization", "tsne")
        pca_init = init_.pca

        perplexity = min(self.perplexity, (len(x) - 1) / 3)
        if previous is None:
            init = pca_init(x, random_state=self.seed)
            # Half openTSNE's default (250 + 500): kNN accuracy and trustworthiness of the
            # shipped series unchanged at the third decimal (bench/embedding_speed.py).
            exaggeration_iter, n_iter = 125, 250
        else:
            # From the previous layout as it is: the clusters already stand where they
            # were, so no early exaggeration (it would spread them from scratch) and fewer
            # iterations; frames move a third as far (mean displacement 0.08 against 0.22
            # for a start rescaled to openTSNE's tiny spread, with exaggeration).
            init = np.asarray(previous, dtype=np.float64)
            exaggeration_iter, n_iter = 0, 150
        small = len(x) < 5000
        tsne = TSNE(
            perplexity=perplexity,
            initialization=init,
            early_exaggeration_iter=exaggeration_iter,
            n_iter=n_iter,
            # Measured here: at 2,000 points Barnes-Hut is 3.6× faster than FFT (FFT's grid
            # grows as the layout spreads); at 10,000 FFT with 2 grid intervals per unit
            # takes 16 s against 38 s (openTSNE's default grid) and 27 s (Barnes-Hut), at
            # the same 2-D kNN accuracy (0.992 vs 0.993).
            negative_gradient_method="bh" if small else "fft",
            # Exact neighbours below 5,000 points: 0.10 s for 2,000 in 50-D against Annoy's
            # 0.47 s (its index build), and no approximation.
            neighbors="exact" if small else "auto",
            ints_in_interval=2,
            # At 2,000 points a second thread costs more than it gives: 50 iterations took
            # 0.35 s of CPU on one thread, 0.9–1.7 s on two (and 2–5× the time when busy).
            n_jobs=1 if small else self.n_jobs,
            random_state=self.seed,
            verbose=False,
        )
        # openTSNE logs a warning for any start wider than its tiny default: an aligned
        # frame starts from the previous layout on purpose.
        quiet = logging.getLogger("openTSNE.tsne")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                return np.asarray(tsne.fit(x))
        finally:
            quiet.setLevel(level)


def _rotate_onto(y: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Rotate/reflect ``y`` to best match ``previous`` (same points): no flips between frames."""
    if previous is None:
        return y
    a, b = y - y.mean(0), previous - previous.mean(0)
    from scipy.linalg import orthogonal_procrustes  # SciPy is in the base install

    r, _ = orthogonal_procrustes(a, b)
    rotated: np.ndarray = a @ r
    return rotated


def class_embedding(
    weights: np.ndarray, means: np.ndarray | None = None, seed: int = 0
) -> dict[str, list[list[float]]]:
    """PCA of the 10 class weight vectors (rows of the last layer) and of the class means.

    Ten points are too few for t-SNE's neighbourhoods, so both use PCA; each is returned
    as 10 (x, y) pairs in class order.
    """
    PCA = _sklearn("decomposition").PCA
    out = {"weights": PCA(2, random_state=seed).fit_transform(weights).round(4).tolist()}
    if means is not None:
        out["means"] = PCA(2, random_state=seed).fit_transform(means).round(4).tolist()
    return out


def embed_snapshots(
    snaps: Snapshots,
    model: Any,
    *,
    stage: str = "fc1",
    method: str = "tsne",
    aligned: bool = True,
    perplexity: float = 30.0,
    callback: Any = None,
) -> tuple[EmbeddingSeries, dict[str, Any]]:
    """Embed every snapshot and the class vectors; return the series and its JSON.

    The class vectors are the rows of the logits stage's weight (when it is a layer with
    one, e.g. ``nn.Linear``) and the class means of the last snapshot.
    """
    series = Embedder(method, stage, aligned=aligned, perplexity=perplexity).fit(snaps, callback)
    payload = series.as_dict()
    classes = class_vectors(snaps, model, stage)
    if classes:
        payload["classes"] = classes
    return series, payload


def class_vectors(snaps: Snapshots, model: Any, stage: str = "fc1") -> dict[str, Any]:
    """The 2-D class vectors of :func:`embed_snapshots`: the logits stage's weight rows
    (when it is a layer with one) and the class means of the last snapshot; only the
    means when ``model`` is None (a run with no weights yet) or has no weight matrix."""
    from ..models import logits_stage, num_classes

    last = np.asarray(snaps.stages[stage][-1])
    classes = num_classes(model) if model is not None else int(snaps.labels.max()) + 1
    present = [k for k in range(classes) if (snaps.labels == k).any()]
    means = np.stack([last[snaps.labels == k].mean(0) for k in present]) if present else None
    weight = (
        None if model is None else getattr(model.get_submodule(logits_stage(model)), "weight", None)
    )
    if isinstance(weight, torch.Tensor) and weight.dim() == 2 and len(weight) == classes:
        return class_embedding(weight.detach().cpu().numpy(), means)
    if means is not None:  # no weight matrix to show: the means alone
        return {"means": class_embedding(means)["weights"]}
    return {}
