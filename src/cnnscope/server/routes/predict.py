"""A drawing in, probabilities and every stage's maps out; attribution maps on demand.

A prediction hops between threads three times, and the event loop does none of its work:
a fast-pool thread decodes and preprocesses the drawing and queues it on the model's
batcher (``server/batching.py``, one forward pass shared with every concurrent request);
the batcher's thread runs the pass, holding the model's lock for it alone, encodes the
batch's maps, then renders and gzips each request's JSON; the event loop only sends it.
A live attribution (a forward and a backward pass of its own) is computed on a fast-pool
thread instead, with that thread's copy of the model, so it never holds up the batch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

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
from ..state import Row, ServedModel, State, unprocessable

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


Answer = tuple[bytes, dict[str, str]]  # the JSON (gzipped if asked) and its headers


def _respond(
    m: ServedModel,
    req: PredictRequest,
    layer: str,
    image: np.ndarray,
    inverted: bool,
    row: Row,
    t0: float,
    accept_encoding: str = "",
) -> Answer:
    """The JSON answer from one image's row of a batched forward pass, gzipped when the
    client accepts it, and its headers: on the batcher's thread, or on a fast-pool thread
    when a live attribution (that thread's model copy) is asked for."""
    logits, encoded = row
    probs = torch.softmax(logits, 0)
    response = PredictResponse(
        model=m.id,
        predicted=int(probs.argmax()),
        # tolist(): the same Python floats as float() of each element, in one call
        probabilities=[round(p, 6) for p in probs.tolist()],
        logits=[round(v, 5) for v in logits.tolist()],
        input=encode(image, per_map=False),
        inverted=inverted,
        blank=not image.any(),
        stages=encoded if req.stages == "all" else {},
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


def _queue(
    m: ServedModel,
    req: PredictRequest,
    layer: str,
    t0: float,
    accept: str,
    loop: asyncio.AbstractEventLoop,
    answer: asyncio.Future[Answer | Callable[[], Answer]],
) -> None:
    """On a fast-pool thread: the drawing decoded and queued on the model's batcher, whose
    thread answers ``answer``: with the rendered JSON, or, for a live attribution, with
    the call that renders it (run on a fast-pool thread by the route)."""
    try:
        image, inverted = input_image(req, m)

        def then(row: Row) -> Answer | Callable[[], Answer]:  # on the batcher's thread
            call = partial(_respond, m, req, layer, image, inverted, row, t0, accept)
            return call if req.explain else call()

        m.predictions.put(image, loop, answer, then)
    except BaseException as e:  # a bad drawing (4xx) or a full queue (503): to the route
        loop.call_soon_threadsafe(_fail, answer, e)


def _dropped(
    loop: asyncio.AbstractEventLoop, answer: asyncio.Future[Any], job: Future[None]
) -> None:
    """A queued job dropped by the pool's shutdown: its request ends instead of hanging."""
    if job.cancelled():
        with contextlib.suppress(RuntimeError):  # a closed loop: the request is gone
            loop.call_soon_threadsafe(_fail, answer, RuntimeError("the server is stopping"))


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():  # a client that left cancelled its future
        future.set_exception(error)


@router.post("/api/predict", response_model=PredictResponse)
async def predict(req: PredictRequest, state: State, request: Request) -> Response:
    t0 = time.perf_counter()
    m = state.served(req.model)
    # Live Grad-CAM explains the model's last conv stage, whatever it is called.
    layer = m.gradcam_layer(None, "explain") if req.explain == "gradcam" else ""
    accept = request.headers.get("accept-encoding", "")
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Answer | Callable[[], Answer]] = loop.create_future()
    job = state.fast.submit(_queue, m, req, layer, t0, accept, loop, answer)
    job.add_done_callback(partial(_dropped, loop, answer))
    result = await answer
    body, headers = await state.fast.run(result) if callable(result) else result
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
