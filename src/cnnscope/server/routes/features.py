"""Each unit's preferred image (rendered in the background, cached), its top test digits,
and how recognisable and faithful the class images are (judged from outside the model)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np

from ..._io import atomic_write
from ...analysis.features import (
    METHODS,
    config_for,
    dead_units,
    layer_images,
    top_examples,
    unit_scores,
)
from ...analysis.features.check import Judges, judge_images
from ...data import MNIST
from ...models import activation_stage
from ...store import best_effort, feature_key, features_cache, shipped, units_cache
from ..background import index_of
from ..encoding import b64
from ..schemas import FeatureCheck, FeatureImages, TopExampleOut
from ..state import AppState, ServedModel, State

router = APIRouter()


def _known_stage(m: ServedModel, stage: str, extra: tuple[str, ...] = ()) -> None:
    if stage not in (*m.stages, *extra):
        valid = ", ".join((*m.stages, *extra))
        raise HTTPException(404, f"unknown stage {stage[:64]!r} of {m.id}; valid: {valid}")


def _known_method(method: str) -> None:
    if method not in METHODS:
        raise HTTPException(422, f"method {method[:32]!r} is unknown; valid: {', '.join(METHODS)}")


@router.get("/api/features/{model_id}/{stage}", response_model=FeatureImages)
async def features(
    model_id: str,
    stage: str,
    state: State,
    method: str = "regularized",
) -> FeatureImages:
    m = state.served(model_id)
    _known_method(method)
    _known_stage(m, stage, ("prob",))
    job = m.feature_jobs.get((stage, method))
    if job is None or job.status == "failed":
        # Reading the files and hashing the weights take a moment: a worker's job.
        job = await state.slow.run(_job, state, m, stage, method)
    return job.model_copy()


def _job(state: AppState, m: ServedModel, stage: str, method: str) -> FeatureImages:
    with m.features_lock:  # one lookup at a time per model: no render starts twice
        job = m.feature_jobs.get((stage, method))
        if job is None or job.status == "failed":
            dead = _dead(state, m, stage)  # first: the render below must not start twice
            job = m.feature_jobs.put((stage, method), _start_features(m, stage, method))
            job.dead = dead
        return job


def _dead(state: AppState, m: ServedModel, stage: str) -> list[int] | None:
    """Units of ``stage`` that never fire on the test set, where they fire (after the
    activation); cached on disk by weights fingerprint and test set. Classes are never
    dead; ``None`` when the test set is not on disk (the images still show)."""
    if stage == "prob" or m.stages[stage].kind == "logits":
        return []
    try:
        d = state.mnist()
    except HTTPException:
        return None
    read = activation_stage(m.model, stage)
    path = units_cache(m.fingerprint, read, d.checksum)
    try:
        peak = load_np(str(path))["peak"]
    except Exception:  # absent or unreadable: measure again (~3 s for 10,000 digits)
        with m.worker("slow") as model:
            scores = m.unit_scores.get_or_make(
                read, lambda: unit_scores(model, d.test_images, read)
            )
        peak = scores.max(axis=0).astype(np.float32)
        best_effort(lambda: atomic_write(path, lambda tmp: save_np({"peak": peak}, str(tmp))))
    return dead_units(peak)


def _units(m: ServedModel, stage: str) -> int:
    """Units of ``stage`` ("prob": the classes), read from the stage list: no forward pass."""
    info = m.stages[stage] if stage != "prob" else list(m.stages.values())[-1]
    return info.shape[0]


def _start_features(m: ServedModel, stage: str, method: str) -> FeatureImages:
    """Ready at once from the shipped or cached file; otherwise queued for rendering.

    Renders run one at a time per model (``m.renders``); a full queue answers 503.
    """
    total = _units(m, stage)
    job = FeatureImages(
        model=m.id, stage=stage, method=method, status="running", done=0, total=total
    )
    key = feature_key(stage, method)
    cfg = config_for(method)
    sources = _sources(m, stage, method)
    found = _stored(m, stage, method)
    if found is not None:
        job.images = b64(found.tobytes())
        job.status, job.done = "ready", total
        return job

    def progress(done: int, _total: int) -> None:
        if m.stopping.is_set():
            raise RuntimeError("the server is stopping")
        job.done = done

    def run() -> None:
        try:
            model = m.snapshot()  # taken when the render starts, not while it waits
            images = layer_images(model, stage, config=cfg, progress=progress)
            pixels = np.round(images * 255).astype(np.uint8)
            job.images = b64(pixels.tobytes())
            job.done, job.status = total, "ready"
            best_effort(
                lambda: atomic_write(sources[-1], lambda tmp: save_np({key: pixels}, str(tmp)))
            )
        except Exception as e:
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"

    m.renders.submit(run)
    return job


def _sources(m: ServedModel, stage: str, method: str) -> list[Path]:
    """Where a layer's images may already be: shipped (if these are the shipped weights),
    then the user cache keyed by the method's settings; renders are written to the last."""
    sources = [features_cache(m.fingerprint, stage, method, config_for(method).digest())]
    if m.source == "shipped":  # made by scripts/ship_weights.py with the same defaults
        sources.insert(0, shipped(m.id, "features.safetensors"))
    return sources


def _stored(m: ServedModel, stage: str, method: str) -> np.ndarray | None:
    """A layer's images (units, 28, 28) uint8 from the shipped or cached file, if any."""
    key = feature_key(stage, method)
    for path in _sources(m, stage, method):
        try:
            stored = load_np(str(path)) if path.exists() else {}
        except Exception:  # an unreadable cache file is a miss: render again
            stored = {}
        if key in stored:
            return stored[key]
    return None


_CHECKS: dict[tuple[str, str, str, str], FeatureCheck] = {}  # bounded: see _check
_CHECKS_LOCK = threading.Lock()


_JUDGES: dict[str, Judges] = {}  # one data set's judges at a time


def _judges(d: MNIST) -> Judges:
    with _CHECKS_LOCK:
        found = _JUDGES.get(d.checksum)
    if found is None:
        found = Judges(d)  # a few seconds the first time, then read from the user cache
        with _CHECKS_LOCK:
            _JUDGES.clear()
            _JUDGES[d.checksum] = found
    return found


@router.get("/api/feature-check/{model_id}", response_model=FeatureCheck)
async def feature_check(model_id: str, state: State, method: str = "regularized") -> FeatureCheck:
    """The class images of ``method`` (those the Features tab shows for ``logits``) judged
    by classifiers trained on MNIST pixels, and their faithfulness; as ``features --check``."""
    m = state.served(model_id)
    _known_method(method)
    shape = tuple(m.model.input_shape[-2:])
    if "logits" not in m.stages or _units(m, "logits") != 10 or shape != (28, 28):
        raise HTTPException(404, f"{m.id} has no 10 class logits to judge as MNIST digits")
    # On the model's render pool, with its own copy of the model: judging never holds up
    # top examples or evaluation (the slow pool) while someone clicks through units.
    return await m.renders.run(_check, state, m, method)


def _check(state: AppState, m: ServedModel, method: str) -> FeatureCheck:
    d = state.data_for(m)  # the model's own test set (and training set, if on disk)
    key = (m.fingerprint, method, config_for(method).digest(), d.checksum)
    with _CHECKS_LOCK:
        if key in _CHECKS:
            return _CHECKS[key]
    judges = _judges(d)  # no model needed: trained (or read) without holding the model
    stored = _stored(m, "logits", method)
    model = m.snapshot()
    if stored is not None:  # the very images the page shows
        images = stored.astype(np.float32) / 255
    else:
        images = layer_images(model, "logits", config=config_for(method))
    result = judge_images(model, images, d, judges, method)
    answer = FeatureCheck(model=m.id, **result.as_dict())
    with _CHECKS_LOCK:
        if len(_CHECKS) >= 64:  # a few per served model and method: drop the oldest
            _CHECKS.pop(next(iter(_CHECKS)))
        _CHECKS[key] = answer
    return answer


@router.get("/api/top-examples/{model_id}/{stage}/{unit}", response_model=list[TopExampleOut])
async def top(
    model_id: str,
    stage: str,
    unit: int,
    state: State,
    k: Annotated[int, Query(ge=1, le=64)] = 9,
) -> list[TopExampleOut]:
    m = state.served(model_id)
    _known_stage(m, stage)  # "prob" has images (features) but no top examples
    n = m.stages[stage].shape[0]
    if not 0 <= unit < n:
        raise HTTPException(404, f"{stage} of {m.id} has units 0–{n - 1}; {unit} is outside")
    return await state.slow.run(_top, state, m, stage, unit, k)


def _top(state: AppState, m: ServedModel, stage: str, unit: int, k: int) -> list[TopExampleOut]:
    d = state.data_for(m)  # the index's images: the same test set
    try:  # built when the server started; or this waits for that build
        index = index_of(state, m)
    except Exception:  # the build failed (the next click retries): scan this stage
        index = None
    read = activation_stage(m.model, stage)
    with m.worker("slow") as model:
        scores = None
        if index is None:  # once per stage: 10,000 images, ~3 s
            scores = m.unit_scores.get_or_make(
                read, lambda: unit_scores(model, d.test_images, read)
            )
        found = top_examples(model, d.test_images, stage, unit, k, scores, index=index)
    return [
        TopExampleOut(
            index=t.index,
            label=int(d.test_labels[t.index]),
            score=round(t.score, 5),
            field=list(t.field) if t.field else None,
            pixels=b64(d.test_images[t.index].numpy().tobytes()),
            size=list(d.image_size),
        )
        for t in found
    ]
