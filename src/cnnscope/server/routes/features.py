"""Each unit's preferred image (rendered in the background, cached) and its top test digits."""

from __future__ import annotations

import threading
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np

from ..._io import atomic_write
from ...analysis.features import RenderConfig, layer_images, top_examples, unit_scores
from ...models import activation_stage
from ...store import feature_key, features_cache, fingerprint, shipped
from ..encoding import b64
from ..schemas import FeatureImages, TopExampleOut
from ..state import ServedModel, State

router = APIRouter()


@router.get("/api/features/{model_id}/{stage}", response_model=FeatureImages)
def features(
    model_id: str,
    stage: str,
    state: State,
    method: Literal["regularized", "plain"] = "regularized",
) -> FeatureImages:
    m = state.served(model_id)
    if stage not in (*m.stages, "prob"):
        raise HTTPException(404, f"unknown stage {stage!r}; valid: {', '.join(m.stages)}, prob")
    with m.evaluation_lock:
        job = m.feature_jobs.get((stage, method))
        if job is None or job.status == "failed":
            job = _start_features(m, stage, method)
            m.feature_jobs[(stage, method)] = job
        return job.model_copy()


def _units(m: ServedModel, stage: str) -> int:
    """Units of ``stage`` ("prob": the classes), read from the stage list: no forward pass."""
    info = m.stages[stage] if stage != "prob" else list(m.stages.values())[-1]
    return info.shape[0]


def _start_features(m: ServedModel, stage: str, method: str) -> FeatureImages:
    """Ready at once from the shipped or cached file; otherwise rendered in a thread."""
    total = _units(m, stage)
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
                job.images = b64(stored[key].tobytes())
                job.status, job.done = "ready", total
                return job
    model = m.snapshot()
    cfg = RenderConfig.plain() if method == "plain" else RenderConfig()

    def progress(done: int, _total: int) -> None:
        job.done = done

    def run() -> None:
        try:
            images = layer_images(model, stage, config=cfg, progress=progress)
            pixels = np.round(images * 255).astype(np.uint8)
            atomic_write(sources[-1], lambda tmp: save_np({key: pixels}, str(tmp)))
            job.images = b64(pixels.tobytes())
            job.done, job.status = total, "ready"
        except Exception as e:
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"

    threading.Thread(target=run, name=f"features-{m.id}-{stage}", daemon=True).start()
    return job


@router.get("/api/top-examples/{model_id}/{stage}/{unit}", response_model=list[TopExampleOut])
def top(
    model_id: str,
    stage: str,
    unit: int,
    state: State,
    k: Annotated[int, Query(ge=1, le=64)] = 9,
) -> list[TopExampleOut]:
    m = state.served(model_id)
    d = state.mnist()
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
            pixels=b64(d.test_images[t.index].numpy().tobytes()),
        )
        for t in found
    ]
