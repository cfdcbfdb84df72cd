"""A drawing in, probabilities and every stage's maps out; attribution maps on demand.

The route validates against the model and hands the rest to worker threads in three
steps: decoding and preprocessing the drawing (fast pool), the forward pass (the model's
batcher, shared with every concurrent request: ``server/batching.py``), then encoding the
maps, rendering the JSON and gzipping it (fast pool). Only the forward pass holds the
model's lock; nothing that scales with the input runs on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time

import numpy as np
import torch
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from ...analysis.attribution import Attribution
from ...decode import decode_png
from ...preprocess import PreprocessError, ink_on_black, prepare
from ..encoding import encode
from ..middleware import gzipped
from ..schemas import (
    AttributionMap,
    ExplainRequest,
    ExplainResponse,
    PredictRequest,
    PredictResponse,
)
from ..state import ServedModel, State, unprocessable

router = APIRouter()

_DATA_URL = re.compile(r"^data:image/[a-z.+-]+;base64,")
# The page's canvas is 280×280; a megapixel leaves room for any drawing and bounds a
# decode at ~16 MB and ~20 ms (4096×4096 cost 512 MB and 1.5 s).
MAX_DRAWING_PIXELS = 1024 * 1024


def input_image(req: PredictRequest, m: ServedModel) -> tuple[np.ndarray, bool]:
    """The request's drawing as the (H, W) image model ``m`` sees, and whether it was
    dark ink on a bright background (inverted, so the page can say so).

    A PNG is fitted to the model's input size; ``pixels`` must be H×W values already
    (422 naming the field and the count otherwise).
    """
    size = m.input_size
    if req.png is not None:
        try:
            raw = base64.b64decode(_DATA_URL.sub("", req.png, count=1), validate=True)
        except (binascii.Error, ValueError) as e:
            raise HTTPException(400, f"png: not valid base64 ({e})") from e
        try:
            prepared = prepare(decode_png(raw, max_pixels=MAX_DRAWING_PIXELS), size)
        except PreprocessError as e:
            raise HTTPException(400, f"png: {e}") from e
        return prepared.image, prepared.inverted
    assert req.pixels is not None  # PredictRequest allows exactly one of png and pixels
    h, w = size
    if len(req.pixels) != h * w:
        raise unprocessable(
            "pixels",
            f"got {len(req.pixels)} values; {m.id} takes {h}×{w} images: "
            f"give {h * w} values, row by row (or a png, fitted to {h}×{w})",
        )
    image = np.asarray(req.pixels, dtype=np.float32).reshape(h, w)
    if req.preprocess:
        prepared = prepare(image, size)
        return prepared.image, prepared.inverted
    # Used as is, except that black on white would read as noise (10–14 % correct).
    ink, inverted = ink_on_black(image)
    return ink, inverted


def attribute(
    m: ServedModel, kind: str, method: str, layer: str, image: np.ndarray, target: int | None
) -> tuple[AttributionMap, Attribution]:
    """An attribution map from the ``kind`` copy of ``m``, encoded for the wire."""
    if target is not None and target >= len(m.classes):
        k = len(m.classes)
        raise unprocessable("target", f"{target} is not a class; {m.id} has {k} (0–{k - 1})")
    try:
        a = m.explain(kind, method, layer, image, target)
    except ValueError as e:
        raise HTTPException(400, str(e)) from e
    encoded = AttributionMap(
        method=a.method, target=a.target, map=encode(a.map, per_map=False), details=a.details
    )
    return encoded, a


def _respond(
    m: ServedModel,
    req: PredictRequest,
    layer: str,
    image: np.ndarray,
    inverted: bool,
    row: dict[str, torch.Tensor],
    t0: float,
    accept_encoding: str = "",
) -> tuple[bytes, dict[str, str]]:
    """The JSON answer from one image's row of a batched forward pass, on a worker thread,
    gzipped there when the client accepts it; and its headers."""
    logits = row["logits"]
    probs = torch.softmax(logits, 0)
    stages = m.sent if req.stages == "all" else []
    encoded = {name: encode(row[name].numpy(), per_map=row[name].dim() == 3) for name in stages}
    response = PredictResponse(
        model=m.id,
        predicted=int(probs.argmax()),
        probabilities=[round(float(p), 6) for p in probs],
        logits=[round(float(v), 5) for v in logits],
        input=encode(image, per_map=False),
        inverted=inverted,
        stages=encoded,
        derived=m.derived if req.stages == "all" else [],
        order=list(m.model.stage_names),
        attribution=(
            attribute(m, _own_copy(), req.explain, layer, image, req.target)[0]
            if req.explain
            else None
        ),
        server_ms=round((time.perf_counter() - t0) * 1000, 3),
    )
    # Rendered here, once: FastAPI would validate the model again before rendering.
    return gzipped(response.model_dump_json().encode(), accept_encoding)


def _own_copy() -> str:
    """The model copy of this fast-pool thread: a live attribution (a forward and a
    backward pass) never waits on another request's, and the pool's threads bound the
    copies (two, a few MB each for the shipped models)."""
    return f"fast-{threading.current_thread().name}"


@router.post("/api/predict", response_model=PredictResponse)
async def predict(req: PredictRequest, state: State, request: Request) -> Response:
    t0 = time.perf_counter()
    m = state.served(req.model)
    # Live Grad-CAM explains the model's last conv stage, whatever it is called.
    layer = m.gradcam_layer(None, "explain") if req.explain == "gradcam" else ""
    image, inverted = await state.fast.run(input_image, req, m)
    row = await m.predictions.submit(image)
    accept = request.headers.get("accept-encoding", "")
    body, headers = await state.fast.run(_respond, m, req, layer, image, inverted, row, t0, accept)
    return Response(body, media_type="application/json", headers=headers)


def _explain(m: ServedModel, req: ExplainRequest, layer: str, t0: float) -> ExplainResponse:
    image, _ = input_image(req, m)
    attribution, raw = attribute(m, "slow", req.method, layer, image, req.target)
    return ExplainResponse(
        model=m.id,
        probabilities=[round(p, 6) for p in raw.probabilities],
        input=encode(image, per_map=False),
        attribution=attribution,
        server_ms=round((time.perf_counter() - t0) * 1000, 3),
    )


@router.post("/api/explain", response_model=ExplainResponse)
async def explain(req: ExplainRequest, state: State) -> ExplainResponse:
    t0 = time.perf_counter()
    m = state.served(req.model)
    layer = ""
    if req.method == "gradcam" or req.layer is not None:
        layer = m.gradcam_layer(req.layer, "layer")
    return await state.slow.run(_explain, m, req, layer, t0)
