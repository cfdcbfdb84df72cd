"""cnnscope: train a CNN on MNIST and see what it learned.

The public API. Names load on first use, so ``import cnnscope`` (and ``cnnscope --help``)
does not import torch.

>>> import cnnscope
>>> m = cnnscope.load("deep_mnist")          # or cnnscope.load("net.py:Net", weights="w.pt")
>>> m.predict(image)                          # (classes,) probabilities
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Model, load
    from .checkpoints import (
        CheckpointError,
        bundled_models,
        bundled_path,
        load_weights,
        save_weights,
    )
    from .data import MNIST, DataError, load_mnist
    from .devices import resolve_device
    from .models import MODELS, StagedModel, build_model, get_spec, load_foreign

__all__ = [
    "MNIST",
    "MODELS",
    "CheckpointError",
    "DataError",
    "Model",
    "__version__",
    "build_model",
    "bundled_models",
    "bundled_path",
    "get_spec",
    "load",
    "load_foreign",
    "load_mnist",
    "load_model",
    "load_weights",
    "resolve_device",
    "save_weights",
]

_LAZY = {
    "Model": "api",
    "load": "api",
    "resolve_device": "devices",
    "load_foreign": "models",
    "CheckpointError": "checkpoints",
    "bundled_models": "checkpoints",
    "bundled_path": "checkpoints",
    "load_weights": "checkpoints",
    "save_weights": "checkpoints",
    "MNIST": "data",
    "DataError": "data",
    "load_mnist": "data",
    "MODELS": "models",
    "build_model": "models",
    "get_spec": "models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnscope' has no attribute {name!r}")


def load_model(
    name_or_path: str | os.PathLike[str] = "deep_mnist",
) -> tuple[StagedModel, dict[str, Any]]:
    """Load trained weights: a registered name (the shipped weights) or a file path.

    Kept for existing code; :func:`load` does this and more (your own models) and returns
    a :class:`Model` with ``predict``, ``stages``, ``features``, ``evaluate``, ``explain``.

    Returns
    -------
    (model, metadata)
        The model in eval mode (float32, CPU) and its JSON metadata.

    Examples
    --------
    >>> model, meta = cnnscope.load_model()  # the shipped deep_mnist
    >>> model, meta = cnnscope.load_model("runs/deep_mnist/model.safetensors")
    """
    from .checkpoints import load_weights, open_model
    from .models import MODELS

    text = os.fspath(name_or_path)
    if text in MODELS:
        return open_model(text)
    path = Path(text)
    if path.suffix != ".safetensors" and not path.exists():
        raise ValueError(
            f"{text!r} is neither a model name ({', '.join(MODELS)}) nor a weights file."
        )
    return load_weights(path)
