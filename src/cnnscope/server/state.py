"""What the server holds: the served models, their locks and private copies, and caches.

Routes take everything from :class:`AppState` (``request.app.state.cnnscope``, through the
:func:`app_state` dependency) and never build or cache anything themselves.
"""

from __future__ import annotations

import copy
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
import torch
from fastapi import Depends, HTTPException, Request

from ..analysis.activations import record
from ..analysis.attribution import Attribution, Explainer
from ..analysis.evaluation import Report
from ..analysis.features import UnitIndex
from ..data import MNIST, DataError, class_names, load_for, load_test_set
from ..models import StagedModel, logits_stage, num_classes, stage_infos
from ..models import StageInfo as Stage
from ..store import fingerprint, shipped
from ..train import runs
from .batching import Batcher
from .encoding import encode_rows
from .pool import WorkerPool
from .schemas import DerivedStage, EncodedStage, EvaluationSummary, FeatureImages

__all__ = [
    "LRU",
    "AppState",
    "Row",
    "ServedModel",
    "State",
    "app_state",
    "served_models",
    "unprocessable",
]

# One image's share of a batched prediction: its logits (K,) and its sent stages, encoded.
Row = tuple[torch.Tensor, dict[str, EncodedStage]]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Sizes of the caches of each served model: every key is a validated stage, method or
# layer of that model, so these bound memory however many distinct requests arrive.
EXPLAINERS = 16  # (copy, method, layer): captum wrappers around the copy, small each
FEATURE_JOBS = 32  # (stage, method): up to 1 MB of base64 images each
UNIT_SCORES = 3  # stage → (10,000, units) float32: 41 MB for a 1,024-unit stage
RENDER_QUEUE = 2  # feature renders waiting behind the one running, per model
# The worker pools of the app. Fast: predictions and live attributions (~1–30 ms each).
# Slow: explain, evaluation, top examples, embeddings, feature lookups (0.1–5 s each).
# 128 in flight: a classroom of 64 drawers (bench/serve_many.py) and their other requests.
FAST_WORKERS, FAST_QUEUE = 2, 126
SLOW_WORKERS, SLOW_QUEUE = 2, 8


class LRU(Generic[K, V]):
    """A dict of at most ``maxsize`` entries that forgets the least recently used."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        found = self.get(key)
        return found if found is not None else self.put(key, make())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


def unprocessable(field: str, message: str) -> HTTPException:
    """422 naming the request field, in the shape of the app's validation errors."""
    return HTTPException(422, f"{field}: {message}")


@dataclass
class ServedModel:
    """A loaded model and what the server precomputes about it."""

    id: str
    model: StagedModel
    meta: dict[str, Any]
    source: str  # "shipped", "fresh" (your own model without weights) or the weights file
    stages: dict[str, Stage] = field(init=False)
    classes: tuple[str, ...] = field(init=False)  # the name of each output, from the metadata
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
    _explainers: LRU[tuple[str, str, str], Explainer] = field(
        init=False, default_factory=lambda: LRU(EXPLAINERS)
    )
    evaluation_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    evaluation: EvaluationSummary | None = field(init=False, default=None)
    report: Report | None = field(init=False, default=None)
    embedding: bytes | None = field(init=False, default=None)  # JSON, made once
    features_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    feature_jobs: LRU[tuple[str, str], FeatureImages] = field(
        init=False, default_factory=lambda: LRU(FEATURE_JOBS)
    )
    unit_scores: LRU[str, np.ndarray] = field(init=False, default_factory=lambda: LRU(UNIT_SCORES))
    _fingerprint: str | None = field(init=False, default=None)
    # The top-examples index (server/background.py): one build per model, shared by all.
    index_job: Future[UnitIndex] | None = field(init=False, default=None)
    index_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.model.eval()
        with self.lock:
            self.stages = dict(stage_infos(self.model))
            self.classes = class_names(self.meta, num_classes(self.model))
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
        # Feature renders (a minute each): one at a time per model, a short queue.
        self.renders = WorkerPool(f"render-{self.id}", workers=1, queue=RENDER_QUEUE)
        # Set when the server stops: a running render gives up at its next step.
        self.stopping = threading.Event()
        # /api/predict's forward passes: concurrent requests share one (server/batching.py).
        self.predictions: Batcher[np.ndarray, Row] = Batcher(self.id, self.forward_rows)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of one input image: what a drawing is fitted to, what pixels must hold."""
        h, w = self.model.input_shape[-2:]
        return int(h), int(w)

    def forward_rows(self, images: Sequence[np.ndarray]) -> list[Row]:
        """Each (H, W) image's logits and sent stages (encoded for the wire), from one
        forward pass of them all.

        The only code that holds :attr:`lock` for predictions, for that pass alone; each
        stage is then encoded in one pass over the batch (:func:`.encoding.encode_rows`).
        """
        x = torch.from_numpy(np.stack(images)).view(len(images), *self.model.input_shape)
        with self.lock:
            out = record(self.model, x, self.sent)
        logits = out[logits_stage(self.model)]
        stages = {name: encode_rows(out[name].numpy(), out[name].dim() == 4) for name in self.sent}
        return [(logits[i], {name: stages[name][i] for name in self.sent}) for i in range(len(x))]

    def embedding_source(self) -> Path | None:
        """The file the Embedding view is made from: shipped layouts, shipped or run
        snapshots; ``None`` when the model has none (the page says so without asking)."""
        if self.source == "shipped":
            candidates = [
                shipped(self.id, "embedding.json"),
                shipped(self.id, "snapshots.safetensors"),
            ]
        elif self.source == "fresh":  # your own model, untrained: no run, no snapshots
            candidates = []
        else:
            candidates = [Path(self.source).parent / runs.SNAPSHOTS]
        return next((p for p in candidates if p.exists()), None)

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint, the key of the disk caches (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def gradcam_layer(self, layer: str | None, field: str) -> str:
        """``layer`` checked as a Grad-CAM stage; ``None`` → the last conv stage.

        Raises 422 naming ``field`` and the valid stages.
        """
        valid = [s.name for s in self.stages.values() if s.spatial and s.kind in _CAM_KINDS]
        convs = [s.name for s in self.stages.values() if s.kind == "conv"]
        if layer is None:
            if not convs:
                raise unprocessable(field, f"gradcam needs a conv stage; {self.id} has none")
            return convs[-1]
        if layer not in valid:
            raise unprocessable(
                field,
                f"{layer[:64]!r} is not a stage Grad-CAM can use in {self.id}; "
                f"valid: {', '.join(valid)}",
            )
        return layer

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
            # Only Grad-CAM reads the layer: other methods share one explainer.
            key = (kind, method, layer if method == "gradcam" else "")
            made = self._explainers.get_or_make(key, lambda: Explainer(model, method, layer=layer))
            return made(image, target)


_CAM_KINDS = ("conv", "act", "pool", "norm")


def _derived_op(info: Stage, module: torch.nn.Module) -> Literal["relu", "maxpool2"] | None:
    """The op the page applies to the previous stage to get this one, if it can."""
    if info.kind == "act" and isinstance(module, torch.nn.ReLU):
        return "relu"
    if (  # exactly what codec.js's maxpool2 computes: 2×2, stride 2, no padding, floor
        info.kind == "pool"
        and isinstance(module, torch.nn.MaxPool2d)
        and module.kernel_size in (2, (2, 2))
        and module.stride in (2, (2, 2))
        and module.padding in (0, (0, 0))
        and module.dilation in (1, (1, 1))
        and not module.ceil_mode
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
        self._model_data: dict[str, MNIST] = {}
        self.fast = WorkerPool("fast", FAST_WORKERS, FAST_QUEUE)
        self.slow = WorkerPool("slow", SLOW_WORKERS, SLOW_QUEUE)

    def shutdown(self) -> None:
        """Stop the pools: queued work is dropped and running renders give up, so that
        Ctrl-C ends ``serve`` in a moment, not after minutes of background renders."""
        for m in self.models:
            m.stopping.set()
            m.renders.shutdown()
            m.predictions.stop()
        self.fast.shutdown()
        self.slow.shutdown()

    def remove_model(self, model_id: str) -> None:
        """Stop serving ``model_id`` (a deleted run's); requests holding it finish with it."""
        old = self.by_id.get(model_id)
        if old is None:
            return
        self.by_id = {k: v for k, v in self.by_id.items() if k != model_id}
        self.models = [x for x in self.models if x.id != model_id]
        old.stopping.set()
        old.renders.shutdown()
        old.predictions.retire()

    def add_model(self, m: ServedModel) -> None:
        """Serve ``m`` too (a training run's newest checkpoint), in place of a model of the
        same id: requests already holding the old one finish with it."""
        old = self.by_id.get(m.id)
        self.by_id = {**self.by_id, m.id: m}
        self.models = [x if x.id != m.id else m for x in self.models]
        if old is None:
            self.models = [*self.models, m]
        else:
            old.stopping.set()
            old.renders.shutdown()
            old.predictions.retire()  # its thread ends once idle: the old model is freed

    def served(self, model_id: str | None) -> ServedModel:
        """The model ``model_id`` (the default for ``None``); 404 lists the served ones."""
        key = model_id or self.default
        if key not in self.by_id:
            raise HTTPException(404, f"unknown model {key!r}; available: {', '.join(self.by_id)}")
        return self.by_id[key]

    def mnist(self) -> MNIST:
        """The server's test set, loaded on first use: ``--data-dir``, else the one the
        default model was trained on (MNIST, shipped with cnnscope); 503 if unavailable."""
        with self._data_lock:
            if self._data is None:
                self._data = self._load(self.by_id[self.default].meta)
            return self._data

    def data_for(self, m: ServedModel) -> MNIST:
        """The test set of model ``m``: the one it was trained on (``--data-dir`` wins)."""
        if self._data is not None and (self._data_dir is not None or m.id == self.default):
            return self._data
        if m.id == self.default:
            return self.mnist()
        with self._data_lock:
            if m.id not in self._model_data:
                self._model_data[m.id] = self._load(m.meta)
            return self._model_data[m.id]

    def _load(self, meta: dict[str, Any]) -> MNIST:
        try:
            if self._data_dir is not None:
                return load_test_set(self._data_dir)
            return load_for(meta)
        except DataError as e:
            raise HTTPException(503, f"test images unavailable: {e}") from e


async def app_state(request: Request) -> AppState:
    """FastAPI dependency: the state ``create_app`` stored on the app.

    ``async``: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop
    (~0.2 ms of CPU under load) per request for one attribute lookup."""
    state: AppState = request.app.state.cnnscope
    return state


State = Annotated[AppState, Depends(app_state)]


def served_models(choices: list[Any]) -> list[ServedModel]:
    """Load the models to serve, in order (the first is the default of the page and API).

    Each choice has ``model``, ``weights``, ``normalize`` and ``input_size`` (the CLI's
    ``ModelChoice``). Ids: a built-in's name; ``arch:stem`` for a built-in's weights file;
    your own model's class name (``Net``, ``Net-2`` for a second one).
    """
    from ..checkpoints import open_model
    from ..models import Adapted

    out: list[ServedModel] = []
    for c in choices:
        model, meta = open_model(c.model, c.weights, normalize=c.normalize, input_size=c.input_size)
        if isinstance(model, Adapted):
            base = type(model.net).__name__
        elif c.weights:
            base = f"{model.arch}:{Path(c.weights).stem}"
        else:
            base = model.arch
        ident, n = base, 1
        while any(m.id == ident for m in out):
            n += 1
            ident = f"{base}-{n}"
        source = (
            str(c.weights)
            if c.weights
            else ("shipped" if not isinstance(model, Adapted) else "fresh")
        )
        out.append(ServedModel(ident, model, meta, source))
    return out
