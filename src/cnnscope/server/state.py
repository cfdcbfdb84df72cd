"""What the server holds: the served models, their locks and private copies, and caches.

Routes take everything from :class:`AppState` (``request.app.state.cnnscope``, through the
:func:`app_state` dependency) and never build or cache anything themselves.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import Depends, HTTPException, Request

from ..analysis.attribution import Attribution, Explainer
from ..analysis.evaluation import Report
from ..data import MNIST, DataError, load_mnist
from ..models import StagedModel, stage_infos
from ..models import StageInfo as Stage
from .schemas import DerivedStage, EvaluationSummary, FeatureImages

__all__ = ["AppState", "ServedModel", "State", "app_state", "served_models"]


@dataclass
class ServedModel:
    """A loaded model and what the server precomputes about it."""

    id: str
    model: StagedModel
    meta: dict[str, Any]
    source: str  # "shipped" or the weights file
    stages: dict[str, Stage] = field(init=False)
    sent: list[str] = field(init=False)
    derived: list[DerivedStage] = field(init=False)
    # Hooks live on the shared modules: one forward at a time per model, or a concurrent
    # request's hook would record into another's outputs. Copies are taken under it too,
    # so that no copy carries another request's recording hooks.
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    # Attribution, evaluation and top examples hook and differentiate their own copies, so
    # none can disturb or wait on /api/predict's model: "fast" serves live maps, "slow" the
    # rest. (A features job, a minute long, takes its own with :meth:`snapshot`.)
    _copies: dict[str, tuple[StagedModel, threading.Lock]] = field(init=False, default_factory=dict)
    _copies_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _explainers: dict[tuple[str, str, str], Explainer] = field(init=False, default_factory=dict)
    evaluation_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    evaluation: EvaluationSummary | None = field(init=False, default=None)
    report: Report | None = field(init=False, default=None)
    embedding: bytes | None = field(init=False, default=None)  # JSON, made once
    feature_jobs: dict[tuple[str, str], FeatureImages] = field(init=False, default_factory=dict)
    unit_scores: dict[str, np.ndarray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.model.eval()
        with self.lock:
            self.stages = dict(stage_infos(self.model))
        self.sent, self.derived = [], []
        names = list(self.stages)
        for i, info in enumerate(self.stages.values()):
            op = _derived_op(info, self.model.get_submodule(info.name)) if i > 0 else None
            if op is not None:
                self.derived.append(
                    DerivedStage(name=info.name, source=names[i - 1], op=op, shape=list(info.shape))
                )
            elif info.kind != "logits":  # logits travel as floats at the top of the response
                self.sent.append(info.name)

    def snapshot(self) -> StagedModel:
        """A private deep copy of the model, taken while no request's hooks are on it."""
        with self.lock:
            return copy.deepcopy(self.model).eval()

    @contextmanager
    def worker(self, kind: str) -> Iterator[StagedModel]:
        """The ``kind`` ("fast" or "slow") private copy of the model, one user at a time."""
        with self._copies_lock:
            if kind not in self._copies:
                self._copies[kind] = (self.snapshot(), threading.Lock())
        model, lock = self._copies[kind]
        with lock:
            yield model

    def explain(
        self, kind: str, method: str, layer: str, image: np.ndarray, target: int | None
    ) -> Attribution:
        """An attribution map from the ``kind`` copy of the model."""
        with self.worker(kind) as model:
            key = (kind, method, layer)
            if key not in self._explainers:
                self._explainers[key] = Explainer(model, method, layer=layer)
            return self._explainers[key](image, target)


def _derived_op(info: Stage, module: torch.nn.Module) -> Literal["relu", "maxpool2"] | None:
    """The op the page applies to the previous stage to get this one, if it can."""
    if info.kind == "act" and isinstance(module, torch.nn.ReLU):
        return "relu"
    if (
        info.kind == "pool"
        and isinstance(module, torch.nn.MaxPool2d)
        and module.kernel_size in (2, (2, 2))
        and module.stride in (2, (2, 2))
    ):
        return "maxpool2"
    return None


class AppState:
    """The served models (the first is the default), the test digits, the random digits."""

    def __init__(
        self,
        models: list[ServedModel],
        data: MNIST | None = None,
        data_dir: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not models:
            raise ValueError("create_app needs at least one model")
        self.models = models
        self.by_id = {m.id: m for m in models}
        self.default = models[0].id
        self.rng = random.Random(seed)
        self._data, self._data_dir = data, data_dir
        self._data_lock = threading.Lock()

    def served(self, model_id: str | None) -> ServedModel:
        """The model ``model_id`` (the default for ``None``); 404 lists the served ones."""
        key = model_id or self.default
        if key not in self.by_id:
            raise HTTPException(404, f"unknown model {key!r}; available: {', '.join(self.by_id)}")
        return self.by_id[key]

    def mnist(self) -> MNIST:
        """The MNIST test set, loaded on first use; 503 when it is not on disk."""
        with self._data_lock:
            if self._data is None:
                try:
                    self._data = load_mnist(self._data_dir, download=False)
                except DataError as e:
                    raise HTTPException(503, f"test digits unavailable: {e}") from e
            return self._data


def app_state(request: Request) -> AppState:
    """FastAPI dependency: the state ``create_app`` stored on the app."""
    state: AppState = request.app.state.cnnscope
    return state


State = Annotated[AppState, Depends(app_state)]


def served_models(names: list[str], weights: list[str]) -> list[ServedModel]:
    """Load shipped weights by architecture name and weights files by path."""
    from .. import load_model

    out = []
    for path in weights:
        model, meta = load_model(path)
        out.append(ServedModel(f"{model.arch}:{Path(path).stem}", model, meta, str(path)))
    for name in names:
        model, meta = load_model(name)
        out.append(ServedModel(name, model, meta, "shipped"))
    return out
