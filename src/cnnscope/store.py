"""Every path cnnscope reads or writes, and the formats of its cache files, in one place.

- the bundled MNIST test set: ``cnnscope/data/mnist/t10k-*.gz``;
- shipped files: ``cnnscope/weights/NAME.<part>`` (weights, metadata, curves, snapshots,
  embedding layouts, feature images), made by ``scripts/ship_weights.py``;
- the user cache: ``$XDG_CACHE_HOME/cnnscope/<area>`` (default ``~/.cache/cnnscope``):
  ``mnist`` (downloaded data), ``predictions`` (test-set logits), ``features`` (images),
  ``units`` (each unit's peak activation over the test set), ``runs`` (the training runs
  of ``serve``'s Train tab, unless ``--runs-dir`` says otherwise), ``judges`` (the
  recognisability judges' weights, per data set);
- caches are keyed by :func:`fingerprint`, so new weights never meet old answers.

Knows nothing else of cnnscope's: the modules that read and write these files import it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from torch import nn

__all__ = [
    "BUNDLED_DATA",
    "REPO_DATA",
    "SHIPPED_DIR",
    "best_effort",
    "cache_dir",
    "feature_key",
    "features_cache",
    "fingerprint",
    "judges_cache",
    "predictions_cache",
    "prior_weights",
    "runs_dir",
    "shipped",
    "units_cache",
    "units_index_cache",
]

SHIPPED_DIR = Path(__file__).parent / "weights"
# The MNIST test set (t10k images and labels, 1.6 MB) inside the package: evaluation and
# the page work after a plain install with no network and no data folder.
BUNDLED_DATA = Path(__file__).parent / "data" / "mnist"
# A source checkout's full MNIST (the sdist carries it too; a wheel does not).
REPO_DATA = Path(__file__).resolve().parents[2] / "data" / "mnist"

Part = Literal[
    "safetensors",  # weights (float16) with metadata in the header
    "json",  # metadata sidecar
    "metrics.jsonl",  # the training curves of the shipped run
    "snapshots.safetensors",  # fc1/logits of the test subset during training, compacted
    "embedding.json",  # the snapshots' t-SNE layouts
    "features.safetensors",  # preferred images, one uint8 (units, 28, 28) per feature_key
]
Area = Literal["mnist", "predictions", "features", "units", "runs", "judges"]


def shipped(name: str, part: Part) -> Path:
    """The shipped file ``part`` of model ``name`` (it may not exist)."""
    return SHIPPED_DIR / f"{name}.{part}"


def prior_weights() -> Path:
    """The shipped decoder of MNIST digits (the ``prior`` feature method), made by
    ``scripts/train_prior.py``: float16 tensors with its settings in the header."""
    return SHIPPED_DIR / "mnist_prior.safetensors"


def cache_dir(area: Area) -> Path:
    """The user-cache folder of ``area``, following ``$XDG_CACHE_HOME``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnscope" / area


def runs_dir() -> Path:
    """The default runs folder of ``serve`` (one folder per run, as ``cnnscope train``
    writes them)."""
    return cache_dir("runs")


def fingerprint(model: nn.Module) -> str:
    """SHA-256 over the architecture and every weight: the key of every cache."""
    h = hashlib.sha256(str(getattr(model, "arch", type(model).__name__)).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def predictions_cache(model_fingerprint: str, images: str, folder: Path | None) -> Path:
    """Where the logits of some images under the weights ``model_fingerprint`` are kept;
    ``images`` is the SHA-256 hex digest of the images' bytes."""
    key = hashlib.sha256((model_fingerprint + images).encode()).hexdigest()[:32]
    return Path(folder or cache_dir("predictions")) / f"{key}.safetensors"


def feature_key(stage: str, method: str) -> str:
    """The tensor name of a layer's images in a features file (shipped or cached)."""
    return f"{stage}/{method}"


def features_cache(model_fingerprint: str, stage: str, method: str, settings: str) -> Path:
    """The cached feature images of one layer and method (same format as shipped).

    ``settings`` is a digest of the render settings: images rendered before a change of
    method or defaults are never served for the new ones.
    """
    name = f"{model_fingerprint[:24]}-{stage}-{method}-{settings[:12]}.safetensors"
    return cache_dir("features") / name


def units_cache(model_fingerprint: str, stage: str, data_checksum: str) -> Path:
    """Each unit's peak activation on one test set: ``{"peak": (units,) float32}``."""
    name = f"{model_fingerprint[:24]}-{stage}-{data_checksum[:12]}.safetensors"
    return cache_dir("units") / name


def judges_cache(data_checksum: str, settings: str) -> Path:
    """The judges of class images trained on one data set: ``{"w": (784, 10), "b": (10,)}``.

    ``settings`` names how they were trained (sample size, seed).
    """
    return cache_dir("judges") / f"{data_checksum[:16]}-{settings}.safetensors"


def units_index_cache(model_fingerprint: str, data_checksum: str) -> Path:
    """Every stage's top test images per unit (``analysis.features.UnitIndex``'s file)."""
    name = f"{model_fingerprint[:24]}-index-{data_checksum[:12]}.safetensors"
    return cache_dir("units") / name


def best_effort(write: Callable[[], object]) -> bool:
    """Run a cache ``write``; a read-only or full disk costs a recomputation, not an error."""
    try:
        write()
    except OSError:
        return False
    return True
