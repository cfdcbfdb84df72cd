"""Health, the served models and their stages, conv filters."""

from __future__ import annotations

import numpy as np
import torch
from fastapi import APIRouter, HTTPException

from ... import __version__
from ...analysis.attribution import FAST_METHODS, METHOD_NAMES, METHODS
from ...analysis.features.methods import METHODS as FEATURES
from ...models import count_parameters
from ..encoding import b64
from ..schemas import (
    AttributionMethod,
    FeatureMethod,
    FilterWeights,
    Health,
    ModelInfo,
    StageInfo,
)
from ..state import ServedModel, State

router = APIRouter()


@router.get("/api/health", response_model=Health)
def health(state: State) -> Health:
    return Health(
        status="ok",
        version=__version__,
        models=list(state.by_id),
        default_model=state.default,
        attribution=[
            AttributionMethod(id=k, name=METHOD_NAMES[k], live=k in FAST_METHODS) for k in METHODS
        ],
        features=[FeatureMethod(id=f.id, name=f.name, trade=f.trade) for f in FEATURES.values()],
    )


def _info(m: ServedModel) -> ModelInfo:
    return ModelInfo(
        id=m.id,
        arch=m.model.arch,
        description=m.model.description,
        parameters=count_parameters(m.model),
        input_shape=list(m.model.input_shape),
        stages=[StageInfo(**i.as_dict()) for i in m.stages.values()],
        metrics=dict(m.meta.get("metrics", {})),
        source=m.source,
        embedding=m.embedding_source() is not None,
        classes=list(m.classes),
    )


@router.get("/api/models", response_model=list[ModelInfo])
def list_models(state: State) -> list[ModelInfo]:
    return [_info(m) for m in state.models]


@router.get("/api/models/{model_id}", response_model=ModelInfo)
def get_model(model_id: str, state: State) -> ModelInfo:
    return _info(state.served(model_id))


@router.get("/api/models/{model_id}/filters/{stage}", response_model=FilterWeights)
def filters(model_id: str, stage: str, state: State) -> FilterWeights:
    m = state.served(model_id)
    if stage not in m.stages:
        raise HTTPException(404, f"unknown stage {stage!r}; valid: {', '.join(m.stages)}")
    module = m.model.get_submodule(stage)
    if m.stages[stage].kind != "conv" or not isinstance(module, torch.nn.Conv2d):
        convs = [s.name for s in m.stages.values() if s.kind == "conv"]
        raise HTTPException(404, f"{stage} has no filters; stages with filters: {', '.join(convs)}")
    w = module.weight.detach().numpy()  # (out, in, kH, kW)
    scale = float(np.abs(w).max()) or 1.0
    q = np.rint(w / scale * 127.5 + 127.5).clip(0, 255).astype(np.uint8)
    return FilterWeights(stage=stage, shape=list(w.shape), scale=scale, data=b64(q.tobytes()))
