"""Each unit's preferred image (rendered in the background, cached) and its top test digits."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np

from ..._io import atomic_write
from ...analysis.features import (
    RenderConfig,
    dead_units,
    layer_images,
    top_examples,
    unit_scores,
)
from ...models import activation_stage
from ...store import best_effort, feature_key, features_cache, shipped, units_cache
from ..background import index_of
from ..encoding import b64
from ..schemas import FeatureImages, TopExampleOut
from ..state import AppState, ServedModel, State

router = APIRouter()


def _known_stage(m: ServedModel, stage: str, extra: tuple[str, ...] = ()) -> None:
    if stage not in (*m.stages, *extra):
        valid = ", ".join((*m.stages, *extra))
        raise HTTPException(404, f"unknown stage {stage[:64]!r} of {m.id}; valid: {valid}")


@router.get("/api/features/{model_id}/{stage}", response_model=FeatureImages)
async def features(
    model_id: str,
    stage: str,
    state: State,
    method: Literal["regularized", "plain"] = "regularized",
) -> FeatureImages:
    m = state.served(model_id)
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
    cfg = RenderConfig.plain() if method == "plain" else RenderConfig()
    sources = [features_cache(m.fingerprint, stage, method, cfg.digest())]
    if m.source == "shipped":  # made by scripts/ship_weights.py with the same defaults
        sources.insert(0, shipped(m.id, "features.safetensors"))
    for path in sources:
        try:
            stored = load_np(str(path)) if path.exists() else {}
        except Exception:  # an unreadable cache file is a miss: render again
            stored = {}
        if key in stored:
            job.images = b64(stored[key].tobytes())
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
