"""The snapshot layouts: how the test digits moved apart while the model trained."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from ...analysis.embedding import embed_snapshots
from ...analysis.snapshots import load_snapshots
from ..schemas import Embedding
from ..state import ServedModel, State

router = APIRouter()


@router.get("/api/embedding/{model_id}", response_model=Embedding)
async def embedding(model_id: str, state: State) -> Response:
    m = state.served(model_id)
    body = m.embedding if m.embedding is not None else await state.slow.run(_embedded, m)
    return Response(body, media_type="application/json")


def _embedded(m: ServedModel) -> bytes:
    """The layouts' JSON, made once per model (a worker thread)."""
    with m.evaluation_lock:
        if m.embedding is None:
            m.embedding = _embedding_json(m)
        return m.embedding


def _embedding_json(m: ServedModel) -> bytes:
    """The model's snapshot layouts: shipped precomputed, or computed from its run's snapshots."""
    source = m.embedding_source()
    if source is not None and source.suffix == ".json":
        return source.read_bytes()  # shipped layouts
    if source is None:
        raise HTTPException(
            404,
            f"no training snapshots for {m.id}. Train it with `cnnscope train --model "
            f"{m.model.arch} --run-dir runs/{m.model.arch}` and serve it with "
            f"`--weights runs/{m.model.arch}/model.safetensors`.",
        )
    try:
        snaps = load_snapshots(source)
    except (ValueError, OSError) as e:  # a damaged run folder: say which, not a 500
        raise HTTPException(422, str(e)) from e
    _, payload = embed_snapshots(snaps, m.model)  # reads the weights only
    return json.dumps(payload).encode()
