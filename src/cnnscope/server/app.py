"""``create_app(models)`` → the FastAPI app. Routes stay thin: they call the Python API.

Responses are compact: each activation map travels as uint8 between its own min and max
(base64), and stages the page can compute (a ReLU of a sent conv, a 2×2 max-pool of that
ReLU) are named in ``derived`` instead of being sent again.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..analysis.activations import StageRecorder, stage_shapes
from ..analysis.attribution import Attribution, Explainer
from ..analysis.evaluation import Report, report, untrained_accuracy
from ..data import MNIST, DataError, load_mnist
from ..models import (
    StagedModel,
    activation_stage,
    count_parameters,
    get_spec,
    stage_infos,
)
from ..preprocess import PreprocessError, decode_png, to_mnist
from .schemas import (
    AttributionMap,
    Cell,
    CellDigit,
    DerivedStage,
    Embedding,
    EncodedStage,
    EvaluationSummary,
    ExplainRequest,
    ExplainResponse,
    FeatureImages,
    FilterWeights,
    Health,
    ModelInfo,
    Pixel255,
    PredictRequest,
    PredictResponse,
    StageInfo,
    TestDigit,
    TopExampleOut,
)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 2 * 1024 * 1024
_DATA_URL = re.compile(r"^data:image/[a-z.+-]+;base64,")


@dataclass
class ServedModel:
    """A loaded model and what the server precomputes about it."""

    id: str
    model: StagedModel
    meta: dict[str, Any]
    source: str  # "shipped" or the weights file
    sent: list[str] = field(init=False)
    derived: list[DerivedStage] = field(init=False)
    shapes: dict[str, tuple[int, ...]] = field(init=False)
    # Hooks live on the shared modules: one forward at a time per model, or a concurrent
    # request's hook would record into another's outputs.
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    # Attribution, evaluation and top examples hook and differentiate their own copies, so
    # none can disturb or wait on /api/predict's model: "fast" serves live maps on the event
    # loop, "slow" the rest in worker threads. (A features job, a minute long, copies its own.)
    _copies: dict[str, tuple[StagedModel, threading.Lock]] = field(init=False, default_factory=dict)
    _copies_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _explainers: dict[tuple[str, str, str], Explainer] = field(init=False, default_factory=dict)
    evaluation_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    evaluation: EvaluationSummary | None = field(init=False, default=None)
    report: Report | None = field(init=False, default=None)
    embedding: bytes | None = field(init=False, default=None)  # JSON, made once
    feature_jobs: dict[tuple[str, str], FeatureImages] = field(init=False, default_factory=dict)
    unit_scores: dict[str, np.ndarray] = field(init=False, default_factory=dict)

    @contextmanager
    def worker(self, kind: str) -> Iterator[StagedModel]:
        """The ``kind`` ("fast" or "slow") private copy of the model, one user at a time."""
        with self._copies_lock:
            if kind not in self._copies:
                self._copies[kind] = (copy.deepcopy(self.model).eval(), threading.Lock())
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

    def __post_init__(self) -> None:
        self.model.eval()
        self.shapes = stage_shapes(self.model)
        self.sent, self.derived = [], []
        names = list(self.model.stage_names)
        for i, name in enumerate(names):
            module = self.model.get_submodule(name)
            op: Literal["relu", "maxpool2"] | None = None
            if i > 0 and isinstance(module, torch.nn.ReLU):
                op = "relu"
            elif (
                i > 0
                and isinstance(module, torch.nn.MaxPool2d)
                and module.kernel_size in (2, (2, 2))
                and module.stride in (2, (2, 2))
            ):
                op = "maxpool2"
            if op is not None:
                self.derived.append(
                    DerivedStage(
                        name=name, source=names[i - 1], op=op, shape=list(self.shapes[name])
                    )
                )
            elif name != "logits":  # logits travel as floats at the top of the response
                self.sent.append(name)


def _encode(values: np.ndarray, per_map: bool) -> EncodedStage:
    """uint8-quantise ``values`` (C, H, W) per map, or a vector as one map."""
    maps = values.reshape(values.shape[0], -1) if per_map else values.reshape(1, -1)
    lo = maps.min(axis=1, keepdims=True)
    hi = maps.max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((maps - lo) / span * 255.0).astype(np.uint8)
    return EncodedStage(
        shape=list(values.shape),
        min=[round(float(v), 6) for v in lo[:, 0]],
        max=[round(float(v), 6) for v in hi[:, 0]],
        data=base64.b64encode(q.tobytes()).decode("ascii"),
    )


class ServerTiming:
    """ASGI middleware: a ``Server-Timing: app;dur=MS`` header on every response.

    Outermost, so the time covers validation, the handler, JSON rendering and gzip: all
    the server does before the first byte leaves. Browsers show it in their dev tools.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - t0) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={ms:.3f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, timed_send)


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is parsed.

    Checks the declared Content-Length first, then counts the bytes actually received
    (a chunked upload declares none).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse(
            {"detail": f"request body over the limit of {self.limit:,} bytes"}, status_code=413
        )
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await too_big(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await too_big(scope, receive, send)


def create_app(
    models: list[ServedModel],
    *,
    data: MNIST | None = None,
    data_dir: str | None = None,
    seed: int | None = None,
    allowed_hosts: Sequence[str] = (),
) -> FastAPI:
    """Build the app serving ``models`` (the first is the default).

    Parameters
    ----------
    models
        Loaded models; build each with ``ServedModel(id, model, meta, source)``.
    data, data_dir
        MNIST for the "random test digit" button; loaded on first use when not given.
    seed
        Seed of the random test digits (tests); ``None`` draws a fresh sequence.
    allowed_hosts
        Host names accepted besides the loopback ones (``serve --host``, ``--allowed-host``).
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    by_id = {m.id: m for m in models}
    default = models[0].id
    # FastAPIOffline serves /docs' Swagger UI from package files, not a CDN.
    app = FastAPIOffline(
        title="cnnscope",
        version=__version__,
        description="Draw a digit; see every layer of a CNN respond.",
        debug=False,
    )
    # Level 1: 27.6 kB for a typical 55 kB answer in 0.8 ms; level 9 saves 5 % for 2× time.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=1)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the offending input, which fails to render when it is
        # NaN or Infinity (a 500); say where and what instead.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors[:5]
        )
        return JSONResponse({"detail": summary, "errors": errors[:20]}, status_code=422)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(ServerTiming)  # added last = outermost: times everything
    cache: dict[str, MNIST] = {} if data is None else {"data": data}
    rng = random.Random(seed)

    def served(model_id: str | None) -> ServedModel:
        key = model_id or default
        if key not in by_id:
            raise HTTPException(404, f"unknown model {key!r}; available: {', '.join(by_id)}")
        return by_id[key]

    def mnist() -> MNIST:
        if "data" not in cache:
            try:
                cache["data"] = load_mnist(data_dir, download=False)
            except DataError as e:
                raise HTTPException(503, f"test digits unavailable: {e}") from e
        return cache["data"]

    @app.get("/api/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", version=__version__, models=list(by_id), default_model=default)

    def info(m: ServedModel) -> ModelInfo:
        return ModelInfo(
            id=m.id,
            arch=m.model.arch,
            description=get_spec(m.model.arch).description,
            parameters=count_parameters(m.model),
            stages=[StageInfo(**i.as_dict()) for i in stage_infos(m.model).values()],
            metrics=dict(m.meta.get("metrics", {})),
            source=m.source,
        )

    @app.get("/api/models", response_model=list[ModelInfo])
    def list_models() -> list[ModelInfo]:
        return [info(m) for m in models]

    @app.get("/api/models/{model_id}", response_model=ModelInfo)
    def get_model(model_id: str) -> ModelInfo:
        return info(served(model_id))

    @app.get("/api/models/{model_id}/filters/{stage}", response_model=FilterWeights)
    def filters(model_id: str, stage: str) -> FilterWeights:
        m = served(model_id)
        if stage not in m.model.stage_names:
            raise HTTPException(
                404, f"unknown stage {stage!r}; valid: {', '.join(m.model.stage_names)}"
            )
        module = m.model.get_submodule(stage)
        if not isinstance(module, torch.nn.Conv2d):
            convs = [n for n in m.model.stage_names if n.startswith("conv")]
            raise HTTPException(
                404, f"{stage} has no filters; stages with filters: {', '.join(convs)}"
            )
        w = module.weight.detach().numpy()  # (out, in, kH, kW)
        scale = float(np.abs(w).max()) or 1.0
        q = np.rint(w / scale * 127.5 + 127.5).clip(0, 255).astype(np.uint8)
        return FilterWeights(
            stage=stage,
            shape=list(w.shape),
            scale=scale,
            data=base64.b64encode(q.tobytes()).decode("ascii"),
        )

    @app.get("/api/test-digits/random", response_model=TestDigit)
    def random_digit() -> TestDigit:
        return test_digit(rng.randrange(len(mnist().test_images)))

    @app.get("/api/test-digits/{index}", response_model=TestDigit)
    def test_digit(index: int) -> TestDigit:
        d = mnist()
        if not 0 <= index < len(d.test_images):
            raise HTTPException(404, f"test index {index} outside 0–{len(d.test_images) - 1}")
        pixels = d.test_images[index].numpy().tobytes()
        return TestDigit(
            index=index,
            label=int(d.test_labels[index]),
            pixels=base64.b64encode(pixels).decode("ascii"),
        )

    # async: a ~1 ms forward pass costs less on the event loop than the hop to a worker
    # thread, and the per-model lock serialises forwards anyway.
    def input_image(req: PredictRequest) -> np.ndarray:
        """The request's drawing as the (28, 28) image the network sees."""
        if req.png is not None:
            try:
                raw = base64.b64decode(_DATA_URL.sub("", req.png, count=1), validate=True)
            except (binascii.Error, ValueError) as e:
                raise HTTPException(400, f"png: not valid base64 ({e})") from e
            try:
                return to_mnist(decode_png(raw))
            except PreprocessError as e:
                raise HTTPException(400, f"png: {e}") from e
        image = np.asarray(req.pixels, dtype=np.float32).reshape(28, 28)
        return to_mnist(image) if req.preprocess else image

    def attribute(
        m: ServedModel, kind: str, method: str, layer: str, image: np.ndarray, target: int | None
    ) -> tuple[AttributionMap, Attribution]:
        try:
            a = m.explain(kind, method, layer, image, target)
        except ValueError as e:
            raise HTTPException(400, str(e)) from e
        encoded = AttributionMap(
            method=a.method, target=a.target, map=_encode(a.map, per_map=False), details=a.details
        )
        return encoded, a

    @app.post("/api/predict", response_model=PredictResponse)
    async def predict(req: PredictRequest) -> Response:
        t0 = time.perf_counter()
        m = served(req.model)
        image = input_image(req)
        x = torch.from_numpy(image).view(1, 1, 28, 28)
        stages = m.sent if req.stages == "all" else []
        with m.lock, torch.no_grad(), StageRecorder(m.model, stages) as rec:
            logits = m.model(x)[0]
        probs = torch.softmax(logits, 0)
        encoded = {
            name: _encode(rec.outputs[name][0].numpy(), per_map=rec.outputs[name].dim() == 4)
            for name in stages
        }
        response = PredictResponse(
            model=m.id,
            predicted=int(probs.argmax()),
            probabilities=[round(float(p), 6) for p in probs],
            logits=[round(float(v), 5) for v in logits],
            input=_encode(image, per_map=False),
            stages=encoded,
            derived=m.derived if req.stages == "all" else [],
            order=list(m.model.stage_names),
            attribution=(
                attribute(m, "fast", req.explain, "conv2", image, req.target)[0]
                if req.explain
                else None
            ),
            server_ms=round((time.perf_counter() - t0) * 1000, 3),
        )
        # Rendered here, once: FastAPI would validate the model again before rendering.
        return Response(response.model_dump_json(), media_type="application/json")

    # Sync: slow methods (occlusion ~0.1 s) run in a worker thread, off the event loop.
    @app.post("/api/explain", response_model=ExplainResponse)
    def explain(req: ExplainRequest) -> ExplainResponse:
        t0 = time.perf_counter()
        m = served(req.model)
        image = input_image(req)
        attribution, raw = attribute(m, "slow", req.method, req.layer, image, req.target)
        probs = raw.probabilities
        return ExplainResponse(
            model=m.id,
            probabilities=[round(p, 6) for p in probs],
            input=_encode(image, per_map=False),
            attribution=attribution,
            server_ms=round((time.perf_counter() - t0) * 1000, 3),
        )

    def evaluated(m: ServedModel) -> tuple[EvaluationSummary, Report]:
        # One evaluation per model, in a worker thread, on its own copy of the model.
        with m.evaluation_lock:
            if m.evaluation is None or m.report is None:
                d = mnist()
                with m.worker("slow") as model:
                    rep = report(model, d.test_images, d.test_labels)
                seed = int(m.meta.get("train_config", {}).get("seed", 0))
                m.report = rep
                m.evaluation = EvaluationSummary(
                    model=m.id,
                    accuracy=rep.accuracy,
                    # only reads the architecture: builds a fresh model of it
                    untrained_accuracy=untrained_accuracy(
                        m.model, d.test_images, d.test_labels, seed
                    ),
                    count=len(rep.labels),
                    errors=int((rep.predictions != rep.labels).sum()),
                    confusion=rep.confusion.tolist(),
                    seconds=round(rep.seconds, 3),
                    precision=rep.metrics["precision"],
                    recall=rep.metrics["recall"],
                    f1=rep.metrics["f1"],
                    support=[int(v) for v in rep.metrics["support"]],
                )
            return m.evaluation, m.report

    @app.get("/api/evaluation/{model_id}", response_model=EvaluationSummary)
    def evaluation(model_id: str) -> EvaluationSummary:
        return evaluated(served(model_id))[0]

    @app.get("/api/evaluation/{model_id}/cell", response_model=Cell)
    def evaluation_cell(
        model_id: str,
        true: Annotated[int, Query(ge=0, le=9)],
        pred: Annotated[int, Query(ge=0, le=9)],
        limit: Annotated[int, Query(ge=1, le=500)] = 60,
    ) -> Cell:
        _, rep = evaluated(served(model_id))
        idx = rep.cell(true, pred)
        images = mnist().test_images
        digits = [
            CellDigit(
                index=int(i),
                label=int(rep.labels[i]),
                pred=int(rep.predictions[i]),
                probabilities=[round(float(p), 5) for p in rep.probabilities[i]],
                pixels=base64.b64encode(images[int(i)].numpy().tobytes()).decode("ascii"),
            )
            for i in idx[:limit]
        ]
        return Cell(true=true, pred=pred, count=len(idx), digits=digits)

    @app.get("/api/embedding/{model_id}", response_model=Embedding)
    def embedding(model_id: str) -> Response:
        m = served(model_id)
        with m.evaluation_lock:
            if m.embedding is None:
                m.embedding = _embedding_json(m)
        return Response(m.embedding, media_type="application/json")

    @app.get("/api/features/{model_id}/{stage}", response_model=FeatureImages)
    def features(
        model_id: str, stage: str, method: Literal["regularized", "plain"] = "regularized"
    ) -> FeatureImages:
        m = served(model_id)
        if stage not in (*m.model.stage_names, "prob"):
            raise HTTPException(
                404, f"unknown stage {stage!r}; valid: {', '.join(m.model.stage_names)}, prob"
            )
        with m.evaluation_lock:
            job = m.feature_jobs.get((stage, method))
            if job is None or job.status == "failed":
                job = _start_features(m, stage, method)
                m.feature_jobs[(stage, method)] = job
            return job.model_copy()

    @app.get("/api/top-examples/{model_id}/{stage}/{unit}", response_model=list[TopExampleOut])
    def top(
        model_id: str, stage: str, unit: int, k: Annotated[int, Query(ge=1, le=64)] = 9
    ) -> list[TopExampleOut]:
        from ..analysis.features import top_examples, unit_scores

        m = served(model_id)
        d = mnist()
        try:
            read = activation_stage(m.model, stage)
            with m.worker("slow") as model:
                if read not in m.unit_scores:  # once per stage: 10,000 images, ~3 s
                    m.unit_scores[read] = unit_scores(model, d.test_images, read)
                found = top_examples(model, d.test_images, stage, unit, k, m.unit_scores[read])
        except ValueError as e:
            raise HTTPException(404, str(e)) from e
        return [
            TopExampleOut(
                index=t.index,
                label=int(d.test_labels[t.index]),
                score=round(t.score, 5),
                field=list(t.field) if t.field else None,
                pixels=base64.b64encode(d.test_images[t.index].numpy().tobytes()).decode(),
            )
            for t in found
        ]

    # The 2017 TensorFlow demo's client posts 784 numbers (0–255) and paints the answer.
    @app.post("/predict")
    def predict_compat(
        pixels: Annotated[list[Pixel255], Body(min_length=784, max_length=784)],
    ) -> dict[str, list[Any]]:
        m = by_id[default]
        needed = ["relu1", "pool1", "relu2", "pool2"]
        if any(n not in m.model.stage_names for n in needed):
            raise HTTPException(
                400, f"/predict needs a model with stages {', '.join(needed)}; {m.id} lacks them"
            )
        x = torch.tensor(pixels, dtype=torch.float32).view(1, 1, 28, 28) / 255.0
        with m.lock, torch.no_grad(), StageRecorder(m.model, needed) as rec:
            logits = m.model(x)[0]
        out: dict[str, list[Any]] = {}
        for old, name in zip(("h_conv1", "h_pool1", "h_conv2", "h_pool2"), needed, strict=True):
            v = rec.outputs[name][0]  # (C, H, W), ≥ 0 after ReLU
            peak = float(v.max())
            # Whole numbers: the old page paints Math.round(value), so nothing is lost,
            # and the answer is a third of the size of float text.
            scaled = v * (255.0 / peak) if peak > 0 else v
            out[old] = scaled.round().to(torch.uint8).tolist()
        out["y_conv"] = logits.tolist()
        return out

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


def _start_features(m: ServedModel, stage: str, method: str) -> FeatureImages:
    """Ready at once from the shipped or cached file; otherwise rendered in a thread."""
    from safetensors.numpy import load_file as load_np
    from safetensors.numpy import save_file as save_np

    from .._io import atomic_write
    from ..analysis.features import RenderConfig, layer_images, stage_size
    from ..store import feature_key, features_cache, fingerprint, shipped

    total = stage_size(m.model, stage)
    job = FeatureImages(
        model=m.id, stage=stage, method=method, status="running", done=0, total=total
    )
    key = feature_key(stage, method)
    sources = [features_cache(fingerprint(m.model), stage, method)]
    if m.source == "shipped":
        sources.insert(0, shipped(m.id, "features.safetensors"))
    for path in sources:
        if path.exists():
            stored = load_np(str(path))
            if key in stored:
                pixels = stored[key]
                job.images = base64.b64encode(pixels.tobytes()).decode()
                job.status, job.done = "ready", total
                return job
    model = copy.deepcopy(m.model)
    cfg = RenderConfig.plain() if method == "plain" else RenderConfig()

    def run() -> None:
        try:

            def progress(done: int, _total: int) -> None:
                job.done = done

            images = layer_images(model, stage, config=cfg, progress=progress)
            pixels = np.round(images * 255).astype(np.uint8)
            path = sources[-1]
            atomic_write(path, lambda tmp: save_np({key: pixels}, str(tmp)))
            job.images = base64.b64encode(pixels.tobytes()).decode()
            job.done, job.status = total, "ready"
        except Exception as e:
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"

    threading.Thread(target=run, name=f"features-{m.id}-{stage}", daemon=True).start()
    return job


def _embedding_json(m: ServedModel) -> bytes:
    """The model's snapshot layouts: shipped precomputed, or computed from its run's snapshots."""
    from ..analysis.embedding import embed_snapshots
    from ..analysis.snapshots import load_snapshots
    from ..store import shipped

    if m.source == "shipped":
        layouts = shipped(m.id, "embedding.json")
        if layouts.exists():
            return layouts.read_bytes()
        snapshots = shipped(m.id, "snapshots.safetensors")
    else:
        snapshots = Path(m.source).parent / "snapshots"
    if not snapshots.exists():
        raise HTTPException(
            404,
            f"no training snapshots for {m.id}. Train it with `cnnscope train --model "
            f"{m.model.arch} --run-dir runs/{m.model.arch}` and serve it with "
            f"`--weights runs/{m.model.arch}/model.safetensors`.",
        )
    _, payload = embed_snapshots(load_snapshots(snapshots), m.model)  # reads the weights only
    return json.dumps(payload).encode()


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


__all__ = ["BodyLimit", "ServedModel", "create_app", "served_models"]
