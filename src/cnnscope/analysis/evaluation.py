"""Where does the network fail? Predictions, scores, the confusion matrix, the mistakes.

:func:`report` runs the whole test set once (batched) and derives everything else from
the logits; the logits are cached on disk per weights fingerprint, so a second report of
the same weights costs milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .._io import atomic_write
from ..data import to_float
from ..devices import device_of
from ..models import MODELS, NUM_CLASSES, StagedModel
from ..store import best_effort, fingerprint, predictions_cache

__all__ = [
    "Evaluation",
    "Mistake",
    "Report",
    "confusion_matrix",
    "evaluate",
    "per_class_metrics",
    "predict",
    "report",
]


@torch.no_grad()
def predict(
    model: StagedModel,
    images: torch.Tensor,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Logits (N, K) for uint8 images (N, H, W), in eval mode, in batches.

    ``progress(done, total)`` is called after each batch with the images done so far.
    """
    was_training = model.training
    model.eval()
    chunks = []
    device = device_of(model)  # the CPU, or --device's GPU
    try:
        for i in range(0, len(images), batch_size):
            chunks.append(model(to_float(images[i : i + batch_size]).to(device)).cpu())
            if progress is not None:
                progress(min(i + batch_size, len(images)), len(images))
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, NUM_CLASSES)


@dataclass(frozen=True)
class Evaluation:
    """Scores of a model on one split (what training reports every epoch)."""

    accuracy: float  # fraction correct, 0–1
    cross_entropy: float  # mean, nats
    per_class_accuracy: list[float]  # recall of each class 0..K-1 (NaN where one is absent)
    count: int

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "cross_entropy": self.cross_entropy,
            "per_class_accuracy": self.per_class_accuracy,
            "count": self.count,
        }


def evaluate(
    model: StagedModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> Evaluation:
    """Accuracy, mean cross-entropy and per-class accuracy of ``model`` on a split."""
    logits = predict(model, images, batch_size)
    _check_labels(labels, logits.shape[1])
    correct = logits.argmax(1) == labels
    per_class = []
    for k in range(logits.shape[1]):
        mask = labels == k
        per_class.append(float(correct[mask].float().mean()) if mask.any() else float("nan"))
    return Evaluation(
        accuracy=float(correct.float().mean()) if len(labels) else float("nan"),
        cross_entropy=float(F.cross_entropy(logits, labels)) if len(labels) else float("nan"),
        per_class_accuracy=per_class,
        count=len(labels),
    )


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """Counts (n, n): row = true class, column = predicted class."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def per_class_metrics(confusion: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall, F1 and support of each class from a confusion matrix.

    A class never predicted has precision 0 (as scikit-learn's ``zero_division=0``).
    """
    c = confusion.astype(np.float64)
    tp = np.diag(c)
    predicted, support = c.sum(axis=0), c.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
    }


@dataclass(frozen=True)
class Mistake:
    """One misclassified image."""

    index: int  # position in the evaluated split
    true: int
    pred: int
    confidence: float  # probability of the (wrong) predicted class
    p_true: float  # probability given to the true class


@dataclass
class Report:
    """Everything :func:`report` measures; ``probabilities`` is (N, K), K classes named
    ``classes`` (``"0"`` … ``"K-1"`` unless the data set or the weights name them)."""

    labels: np.ndarray
    probabilities: np.ndarray
    confusion: np.ndarray
    metrics: dict[str, list[float]]
    accuracy: float
    cross_entropy: float
    seconds: float  # time to compute the predictions (0 when they came from the cache)
    cached: bool
    extra: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = [str(k) for k in range(self.confusion.shape[0])]

    @property
    def predictions(self) -> np.ndarray:
        return np.asarray(self.probabilities.argmax(1))

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Rows sum to 1: the share of each true class predicted as each class."""
        rows = self.confusion.sum(axis=1, keepdims=True)
        out: np.ndarray = np.divide(
            self.confusion, rows, out=np.zeros(self.confusion.shape), where=rows > 0
        )
        return out

    def mistakes(self) -> list[Mistake]:
        """All misclassified images, most confident first."""
        pred = self.predictions
        wrong = np.flatnonzero(pred != self.labels)
        out = [
            Mistake(
                index=int(i),
                true=int(self.labels[i]),
                pred=int(pred[i]),
                confidence=float(self.probabilities[i, pred[i]]),
                p_true=float(self.probabilities[i, self.labels[i]]),
            )
            for i in wrong
        ]
        return sorted(out, key=lambda m: -m.confidence)

    def cell(self, true: int, pred: int) -> np.ndarray:
        """Indices of the images in confusion cell (true, pred), least confident first."""
        idx = np.flatnonzero((self.labels == true) & (self.predictions == pred))
        return idx[np.argsort(self.probabilities[idx, pred], kind="stable")]

    def as_dict(self, mistakes: int = 100) -> dict[str, Any]:
        """A JSON-ready summary: scores, matrices, the most confident mistakes."""
        return {
            "accuracy": self.accuracy,
            "cross_entropy": self.cross_entropy,
            "classes": list(self.classes),
            "count": len(self.labels),
            "errors": int((self.predictions != self.labels).sum()),
            "confusion": self.confusion.tolist(),
            "confusion_normalized": np.round(self.confusion_normalized, 6).tolist(),
            **self.metrics,
            "per_class_accuracy": self.metrics["recall"],  # the same figure, its usual name
            "most_confident_mistakes": [m.__dict__ for m in self.mistakes()[:mistakes]],
            "seconds": self.seconds,
            **self.extra,
        }


# Each split's content hash, computed once per tensor (10,000 MNIST digits: 7.8 MB,
# ~15–35 ms of SHA-256, a third of a cached report's time). Keyed by the tensor object
# (held weakly) and its version counter, so an in-place change through torch is hashed again.
_DIGESTS: dict[int, tuple[weakref.ref[torch.Tensor], int, str]] = {}


def _images_digest(images: torch.Tensor) -> str:
    known = _DIGESTS.get(id(images))
    if known is not None and known[0]() is images and known[1] == images._version:
        return known[2]
    digest = hashlib.sha256(np.ascontiguousarray(images.numpy()).tobytes()).hexdigest()
    for k in [k for k, (ref, _, _) in _DIGESTS.items() if ref() is None]:
        del _DIGESTS[k]  # tensors gone: their ids may be reused
    _DIGESTS[id(images)] = (weakref.ref(images), images._version, digest)
    return digest


def report(
    model: StagedModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    classes: Sequence[str] | None = None,
    weights_key: str | None = None,
) -> Report:
    """Evaluate ``model`` on a labelled split: accuracy, per-class metrics, confusion.

    Parameters
    ----------
    model
        Any cnnscope model; its predictions are cached under its :func:`fingerprint`
        together with a hash of ``images``.
    images, labels
        uint8 (N, H, W) and int (N,), e.g. ``data.test_images, data.test_labels``.
    cache
        Read and write the prediction cache (``~/.cache/cnnscope/predictions``).
    progress
        ``progress(done, total)``, images predicted so far; not called on a cache hit.
    classes
        The name of each of the model's K outputs (``data.classes``); default ``"0"`` ….
        A name list of another length, or a label ≥ K, raises ``ValueError``.
    weights_key
        ``model``'s :func:`fingerprint` when the caller already has it (the server
        computes it once per model): hashing 13 MB of weights again took 30–90 ms of a
        cached report's time.
    """
    import time

    path = predictions_cache(
        weights_key or fingerprint(model),
        _images_digest(images),
        Path(cache_dir) if cache_dir else None,
    )
    logits: torch.Tensor | None = None
    seconds = 0.0
    if cache and path.exists():
        try:
            logits = load_file(str(path))["logits"]
        except Exception:
            logits = None
    cached = logits is not None
    if logits is None or len(logits) != len(images):
        t0 = time.perf_counter()
        logits = predict(model, images, progress=progress)
        seconds = time.perf_counter() - t0
        cached = False
        if cache:
            tensors = {"logits": logits.contiguous()}
            best_effort(lambda: atomic_write(path, lambda tmp: save_file(tensors, str(tmp))))
    k = logits.shape[1]
    _check_labels(labels, k)
    if classes is not None and len(classes) != k:
        raise ValueError(
            f"the model has {k} outputs but the data set names {len(classes)} classes "
            f"({', '.join(classes[:5])}{'…' if len(classes) > 5 else ''}); evaluate it on "
            "the data it was trained on (--data-dir)"
        )
    y = labels.numpy()
    probs = torch.softmax(logits, 1).numpy()
    confusion = confusion_matrix(y, probs.argmax(1), k)
    return Report(
        labels=y,
        probabilities=probs,
        confusion=confusion,
        metrics=per_class_metrics(confusion),
        accuracy=float((probs.argmax(1) == y).mean()) if len(y) else float("nan"),
        cross_entropy=float(F.cross_entropy(logits, labels)) if len(y) else float("nan"),
        seconds=seconds,
        cached=cached,
        classes=list(classes) if classes is not None else [],
    )


def _check_labels(labels: torch.Tensor, k: int) -> None:
    if len(labels) and int(labels.max()) >= k:
        raise ValueError(
            f"label {int(labels.max())} but the model has only {k} outputs; evaluate it on "
            "the data it was trained on (--data-dir)"
        )


def untrained_accuracy(
    model: StagedModel, images: torch.Tensor, labels: torch.Tensor, seed: int = 0
) -> float:
    """Accuracy of the same architecture freshly initialised with ``seed``: the baseline.

    Its predictions are cached like any model's. A built-in architecture's fresh weights
    are a function of its options, the seed and the torch and cnnscope versions, so they
    are keyed by those (no build, no hash of the weights: a cached baseline costs a few ms
    instead of 100–180 ms); another model is built and keyed by its weights' fingerprint.
    """
    from .. import __version__

    key = None
    if isinstance(model, StagedModel) and model.arch in MODELS:
        recipe = {
            "untrained": model.arch,
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "config": model.config(),
            "seed": seed,
            "torch": torch.__version__,
            "cnnscope": __version__,
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        path = predictions_cache(key, _images_digest(images), None)
        if path.exists():
            with contextlib.suppress(Exception):  # damaged: rebuilt and rewritten below
                logits = load_file(str(path))["logits"]
                if len(logits) == len(images):
                    predicted = torch.softmax(logits, 1).numpy().argmax(1)  # as report's
                    return float((predicted == labels.numpy()).mean())
    with torch.random.fork_rng():  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        fresh = model.rebuild()  # a built-in or your own model, freshly initialised
    return report(fresh, images, labels, weights_key=key).accuracy
